// The employee's view: what is monitored, captured and masked, and the
// state of the current tab's app session. Reads the status the service
// worker keeps in chrome.storage.local (no secrets are ever there).
'use strict';

function li(text, cls) {
  const n = document.createElement('li');
  n.textContent = text;
  if (cls) n.className = cls;
  return n;
}

function hostMatch(app, host) {
  return app.hosts.some((h) => {
    const re = new RegExp(
      `^${h.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*\*/g, '\u0000').replace(/\*/g, '[^.]*').replace(/\u0000/g, '.*')}$`,
      'i',
    );
    return re.test(host);
  });
}

async function render() {
  const { status } = await chrome.storage.local.get('status');
  const apps = document.getElementById('apps');
  if (status && status.apps && status.apps.length) {
    apps.replaceChildren();
    for (const a of status.apps) {
      const item = li(`${a.name} (${a.hosts.join(', ')})`);
      const sub = document.createElement('ul');
      sub.append(li(a.clearFields.length ? `Kept readable: ${a.clearFields.join(', ')}` : 'No field is kept readable.', 'muted'));
      if (a.guarded.length) {
        sub.append(li(`Actions that ask first or are refused: ${a.guarded.map((g) => `${g.title} (${g.response.replace('_', '-')})`).join('; ')}`, 'muted'));
      }
      const s = status.sessions && status.sessions[a.id];
      sub.append(
        li(
          s
            ? `Session: since ${new Date(s.startedMs).toLocaleTimeString()}${s.user ? ` as ${s.user}` : ''}; session risk ${s.sessionRisk}.`
            : 'Session: none recorded.',
          s && s.sessionRisk >= 60 ? 'risk-high' : 'muted',
        ),
      );
      item.append(sub);
      apps.append(item);
    }
  }
  const [tab] = await chrome.tabs.query({ active: true, currentWindow: true }).catch(() => []);
  if (status && tab && tab.url) {
    let host = '';
    try {
      host = new URL(tab.url).hostname;
    } catch {
      host = '';
    }
    const app = (status.apps || []).find((a) => hostMatch(a, host));
    const section = document.getElementById('session');
    section.hidden = false;
    const text = document.getElementById('session-text');
    if (!app) {
      text.textContent = 'This site is not monitored. Nothing here is captured.';
    } else {
      const s = status.sessions && status.sessions[app.id];
      text.textContent = s
        ? `${app.name}: monitored. Session since ${new Date(s.startedMs).toLocaleTimeString()}${s.user ? ` as ${s.user}` : ''}; session risk ${s.sessionRisk}.`
        : `${app.name}: monitored. No session recorded yet.`;
      if (s && s.sessionRisk >= 60) text.className = 'risk-high';
    }
  }
  const rules = document.getElementById('rules');
  if (status && status.packs) {
    rules.replaceChildren();
    for (const p of status.packs) rules.append(li(`Rule pack ${p.id}, version ${p.version} (from ${p.origin}), verified against your organisation's keys.`));
    if (!status.packs.length) rules.append(li('No rule pack in force: nothing is captured.'));
    // A refused update is said plainly: the pack above stays in force.
    for (const e of status.packErrors || []) {
      rules.append(
        li(`Refused a rule pack from ${e.origin} (${e.code || e.name}) at ${new Date(e.atMs).toLocaleTimeString()}: ${e.message}. The rules above stay in force.`, 'risk-high'),
      );
    }
  }
  const agent = document.getElementById('agent');
  if (!status) {
    agent.textContent = 'Starting…';
    return;
  }
  const parts = [
    status.configSource === 'policy' ? 'Configured by your organisation.' : status.configSource === 'dev' ? 'Development configuration (not managed).' : 'Not configured.',
    enrollmentText(status),
    `${status.queue} event(s) waiting to be sent.`,
  ];
  if (status.upload && status.upload.lastOkMs) parts.push(`Last sent ${new Date(status.upload.lastOkMs).toLocaleTimeString()}.`);
  if (status.gap) parts.push(`${status.gap.dropped} event(s) could not be kept (storage cap); this is recorded.`);
  if (status.lastResponse) parts.push(`Last response: ${status.lastResponse.response.replace('_', '-')} — ${status.lastResponse.title}.`);
  agent.textContent = parts.join(' ');
}

/** Where enrollment stands, in plain words (status.enrollment, see sw.js). */
function enrollmentText(status) {
  const e = status.enrollment || {};
  const at = (ms) => new Date(ms).toLocaleTimeString();
  if (status.enrolled) {
    return e.reenrolledMs
      ? `Enrolled (re-enrolled at ${at(e.reenrolledMs)}: this device had lost its credential and proved it still holds its key).`
      : 'Enrolled.';
  }
  if (e.state === 'refused' && e.code === 'device_revoked') {
    return 'This device was revoked by your organisation: events are kept on this device and not sent.';
  }
  if (e.state === 'refused') {
    return `Enrollment was refused (${e.code}): ${e.message}. Nothing is sent until your organisation provides a new enrollment token.`;
  }
  if (e.state === 'retrying') return `Not enrolled yet (${e.code}); trying again at ${at(e.nextMs)}.`;
  return 'Not enrolled yet.';
}

render();
