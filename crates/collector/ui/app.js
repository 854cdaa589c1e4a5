// sessiontrail auditor UI: search, sessions, a session timeline and evidence
// export. Hash routes: #/search?…, #/sessions?…, #/timeline?…
import { ApiError, clearCredential, credential, exportEvidence, getJson, setCredential } from './api.js';
import { chainBadge, decision, h, isoToLocalInput, localInputToIso, severity, shortKey, signatureBadge, utc, utcTime } from './format.js';

const $ = (id) => document.getElementById(id);
const FILTERS = ['q', 'user', 'app', 'action', 'severity', 'decision', 'rule', 'tag', 'from', 'to'];
const PAGE = 50;

const state = { cursor: null, query: {}, facets: null, lastSearchHash: '#/search' };

// ------------------------------------------------------------------ helpers

function toast(message, bad = false) {
  const t = $('toast');
  t.textContent = message;
  t.className = bad ? 'toast bad' : 'toast';
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, 6000);
}

function setStatus(id, text, bad = false) {
  const el = $(id);
  el.textContent = text;
  el.classList.toggle('error-text', bad);
}

function handleError(err, statusId) {
  if (err instanceof ApiError && err.status === 401) {
    clearCredential();
    showSignin('Your credential was not accepted. Paste it again.');
    return;
  }
  const msg = err instanceof ApiError ? `${err.message} (${err.code})` : `The collector could not be reached: ${err.message}`;
  if (statusId) setStatus(statusId, msg, true);
  else toast(msg, true);
}

function parseHash() {
  const raw = window.location.hash.replace(/^#/, '') || '/search';
  const [path, qs] = raw.split('?');
  return { path, params: new URLSearchParams(qs ?? '') };
}

function showOnly(id) {
  for (const v of ['signin', 'view-search', 'view-sessions', 'view-timeline']) $(v).hidden = v !== id;
  $('nav-search').toggleAttribute('aria-current', id === 'view-search');
  $('nav-sessions').toggleAttribute('aria-current', id === 'view-sessions');
  if (id === 'view-search') $('nav-search').setAttribute('aria-current', 'page');
  if (id === 'view-sessions') $('nav-sessions').setAttribute('aria-current', 'page');
}

async function download({ blob, filename, events }) {
  const url = URL.createObjectURL(blob);
  const a = h('a', { href: url, download: filename });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
  toast(`Exported ${events} event${events === 1 ? '' : 's'} to ${filename}. Verify it with: sessiontrail evidence verify ${filename}`);
}

async function doExport(query, button) {
  button.disabled = true;
  const label = button.textContent;
  button.textContent = 'Exporting…';
  try {
    await download(await exportEvidence(query));
  } catch (err) {
    handleError(err);
  } finally {
    button.disabled = false;
    button.textContent = label;
  }
}

// ------------------------------------------------------------------ sign-in

function showSignin(error) {
  showOnly('signin');
  $('signout').hidden = true;
  $('whoami').textContent = '';
  $('signin-error').hidden = !error;
  $('signin-error').textContent = error ?? '';
  $('credential').value = '';
  $('credential').focus();
}

async function loadFacets() {
  const f = await getJson('/v1/facets');
  state.facets = f;
  const fill = (sel, values, label = (v) => v) => {
    for (const s of Array.isArray(sel) ? sel : [sel]) {
      const keep = s.querySelector('option[value=""]');
      s.replaceChildren(keep, ...values.map((v) => h('option', { value: v }, label(v))));
    }
  };
  const list = (dl, values) => dl.replaceChildren(...values.map((v) => h('option', { value: v })));
  fill([$('f-app'), $('s-app')], f.apps);
  fill($('f-action'), f.actions, (a) => a.replaceAll('_', ' '));
  fill($('f-severity'), f.severities);
  fill($('f-decision'), f.decisions, (d) => d.replaceAll('_', ' '));
  list($('dl-users'), f.users);
  list($('dl-rules'), f.rules);
  list($('dl-tags'), f.tags);
}

$('signin-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const c = $('credential').value.trim();
  if (!c) return;
  setCredential(c);
  try {
    await loadFacets();
    signedIn();
    route();
  } catch (err) {
    clearCredential();
    const msg = err instanceof ApiError
      ? (err.status === 403 ? 'This credential is not an auditor or admin credential.' : 'This credential was not accepted.')
      : `The collector could not be reached: ${err.message}`;
    showSignin(msg);
  }
});

$('signout').addEventListener('click', () => {
  clearCredential();
  showSignin();
});

function signedIn() {
  $('signout').hidden = false;
  const c = credential() ?? '';
  $('whoami').textContent = `credential ${c.split('.')[1] ?? ''}`;
}

// ------------------------------------------------------------------ search

function formQuery() {
  const q = {};
  for (const k of FILTERS) {
    let v = $(`f-${k}`).value.trim();
    if (k === 'from' || k === 'to') v = localInputToIso(v);
    if (v) q[k] = v;
  }
  return q;
}

function fillForm(params) {
  for (const k of FILTERS) {
    const v = params.get(k) ?? '';
    $(`f-${k}`).value = k === 'from' || k === 'to' ? isoToLocalInput(v) : v;
  }
}

function eventRow(ev) {
  const open = () => openTimeline(ev);
  const tr = h('tr', { tabindex: '0', 'aria-label': `${ev.description} by ${ev.user} at ${utc(ev.time_ms)}; open the session timeline` },
    h('td', { class: 'time' }, utc(ev.time_ms)),
    h('td', { class: 'who' }, ev.user, h('span', { class: 'sub' }, ev.app)),
    h('td', { class: 'what' }, ev.description || ev.action, h('span', { class: 'sub', title: ev.url }, ev.url)),
    h('td', {}, h('span', { class: 'rule' }, ev.rules.join(', ') || '—'),
      ev.tags.length ? h('div', { class: 'tags' }, ev.tags.map((t) => h('span', { class: 'tag' }, t))) : null),
    h('td', {}, severity(ev.severity)),
    h('td', {}, decision(ev.response), ev.trusted ? null : h('span', { class: 'sub check-bad' }, 'synthetic event')),
    h('td', {}, signatureBadge(ev.verification.signature), h('br'), chainBadge(ev.verification.chain)),
  );
  tr.addEventListener('click', open);
  tr.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); open(); }
  });
  return tr;
}

function openTimeline(ev) {
  const p = new URLSearchParams();
  if (ev.session) {
    p.set('user', ev.user);
    p.set('app', ev.app);
    p.set('session', ev.session);
  } else {
    p.set('device', ev.device_key);
    p.set('session', ev.session);
  }
  p.set('focus', String(ev.leaf_index));
  window.location.hash = `#/timeline?${p}`;
}

async function runSearch(append = false) {
  const tbody = $('results').querySelector('tbody');
  const params = { ...state.query, limit: PAGE };
  if (append && state.cursor) params.cursor = state.cursor;
  setStatus('search-status', append ? 'Loading more…' : 'Searching…');
  $('do-search').disabled = true;
  const t0 = performance.now();
  try {
    const r = await getJson('/v1/events', params);
    if (!append) tbody.replaceChildren();
    tbody.append(...r.events.map(eventRow));
    state.cursor = r.next_cursor;
    $('results').hidden = tbody.children.length === 0;
    $('load-more').hidden = !r.next_cursor;
    const n = tbody.children.length;
    const ms = Math.round(performance.now() - t0);
    setStatus('search-status', n === 0
      ? 'No events match these filters.'
      : `${n}${r.next_cursor ? '+' : ''} event${n === 1 ? '' : 's'}, newest first · ${ms} ms`);
  } catch (err) {
    handleError(err, 'search-status');
  } finally {
    $('do-search').disabled = false;
  }
}

$('search-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const q = formQuery();
  const hash = `#/search?${new URLSearchParams(q)}`;
  if (window.location.hash === hash) route();
  else window.location.hash = hash;
});

$('do-reset').addEventListener('click', () => {
  for (const k of FILTERS) $(`f-${k}`).value = '';
  window.location.hash = '#/search';
});

$('load-more').addEventListener('click', () => runSearch(true));
$('do-export').addEventListener('click', (e) => doExport(formQuery(), e.currentTarget));

// ------------------------------------------------------------------ sessions

async function listSessions(params) {
  $('s-user').value = params.get('user') ?? '';
  $('s-app').value = params.get('app') ?? '';
  const tbody = $('sessions').querySelector('tbody');
  setStatus('sessions-status', 'Loading sessions…');
  try {
    const r = await getJson('/v1/sessions', { user: params.get('user'), app: params.get('app'), limit: 200 });
    tbody.replaceChildren(...r.sessions.map((s) => {
      const open = () => {
        window.location.hash = `#/timeline?${new URLSearchParams({ user: s.user, app: s.app, session: s.session })}`;
      };
      const tr = h('tr', { tabindex: '0', 'aria-label': `Session ${s.session} of ${s.user} in ${s.app}` },
        h('td', { class: 'who' }, s.user, h('span', { class: 'sub' }, s.app)),
        h('td', { class: 'mono' }, s.session),
        h('td', { class: 'time' }, utc(s.first_ms)),
        h('td', { class: 'time' }, utc(s.last_ms)),
        h('td', {}, String(s.events), s.held ? h('span', { class: 'sub' }, `${s.held} held for a decision`) : null),
        h('td', {}, severity(s.max_severity)),
        h('td', {}, s.logins && s.logouts ? h('span', { class: 'check check-ok' }, 'complete')
          : h('span', { class: 'check check-warn' }, s.logins ? 'no logout' : 'no login')),
      );
      tr.addEventListener('click', open);
      tr.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); open(); } });
      return tr;
    }));
    $('sessions').hidden = r.sessions.length === 0;
    setStatus('sessions-status', r.sessions.length ? `${r.sessions.length} session${r.sessions.length === 1 ? '' : 's'}, most recent first` : 'No sessions match.');
  } catch (err) {
    handleError(err, 'sessions-status');
  }
}

$('sessions-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const q = {};
  if ($('s-user').value.trim()) q.user = $('s-user').value.trim();
  if ($('s-app').value) q.app = $('s-app').value;
  window.location.hash = `#/sessions?${new URLSearchParams(q)}`;
});

// ------------------------------------------------------------------ timeline

function stat(k, v, cls = '') {
  return h('div', { class: `stat ${cls}` }, h('div', { class: 'k' }, k), h('div', { class: 'v' }, v));
}

function timelineEntry(e, focus) {
  if (e.type === 'gap') {
    return h('li', { class: 't-entry t-gap' },
      h('div', { class: 't-time' }, '—'),
      h('div', { class: 't-dot', 'aria-hidden': 'true' }),
      h('div', { class: 't-body' },
        h('div', { class: 't-title' }, `${e.missing} event${e.missing === 1 ? '' : 's'} missing`),
        h('div', { class: 't-reason' }, e.message)),
      h('div', { class: 't-verify' }, h('span', { class: 'seq' }, `device ${shortKey(e.device_key)}`), h('span', { class: 'seq' }, `seq ${e.first_seq}–${e.last_seq}`)),
    );
  }
  const sevCls = e.severity ? `sev-bg-${e.severity}` : '';
  const life = ['login', 'logout', 'terminated'].includes(e.action) ? 'life' : '';
  const li = h('li', { class: `t-entry ${sevCls} ${life}`, id: `leaf-${e.leaf_index}`, tabindex: focus ? '-1' : null },
    h('div', { class: 't-time', title: utc(e.time_ms) }, utcTime(e.time_ms)),
    h('div', { class: 't-dot', 'aria-hidden': 'true' }),
    h('div', { class: 't-body' },
      h('div', { class: 't-title' }, e.description || e.action),
      e.url ? h('div', { class: 't-url' }, e.url) : null,
      (e.rules.length || e.response !== 'log' || e.severity) ? h('div', { class: 't-meta' },
        severity(e.severity),
        e.rules.length ? h('span', { class: 'rule' }, e.rules.join(', ')) : null,
        decision(e.response),
        e.tags.map((t) => h('span', { class: 'tag' }, t))) : null,
      e.reason ? h('div', { class: 't-reason' }, e.reason) : null,
      e.trusted ? null : h('div', { class: 't-reason check-bad' }, 'Synthetic event: the page generated it, not the user.'),
    ),
    h('div', { class: 't-verify' },
      signatureBadge(e.verified.signature),
      chainBadge(e.verified.chain),
      h('span', { class: 'seq' }, `seq ${e.seq} · leaf ${e.leaf_index}`)),
  );
  return li;
}

async function showTimeline(params) {
  const q = {};
  for (const k of ['user', 'app', 'session', 'device']) if (params.get(k)) q[k] = params.get(k);
  $('back-link').href = state.lastSearchHash;
  $('timeline-title').textContent = 'Session timeline';
  $('timeline-sub').textContent = '';
  $('timeline-summary').replaceChildren();
  $('timeline').replaceChildren();
  setStatus('timeline-status', 'Loading and re-verifying the session…');
  try {
    const t = await getJson('/v1/timeline', q);
    const s = t.summary;
    $('timeline-title').textContent = `${t.user ?? shortKey(t.devices[0] ?? '')} in ${t.app ?? 'all apps'}`;
    $('timeline-sub').textContent = `Session ${t.session} · ${s.first_ms ? utc(s.first_ms) : ''} → ${s.last_ms ? utc(s.last_ms) : ''} UTC · ${t.devices.length} device${t.devices.length === 1 ? '' : 's'}`;
    $('timeline-summary').replaceChildren(
      stat('Events', String(s.events)),
      stat('Missing', String(s.missing), s.missing ? 'bad' : 'good'),
      stat('Failed verification', String(s.failed), s.failed ? 'bad' : 'good'),
      s.terminated
        ? stat('Login → end', s.login ? 'Terminated by policy' : 'No login · terminated', s.login ? 'warn' : 'bad')
        : stat('Login → logout', s.login && s.logout ? 'Complete' : s.login ? 'No logout' : 'No login', s.login && s.logout ? 'good' : 'bad'),
      stat('Evidence', s.complete_and_verified ? 'Verified' : 'Incomplete', s.complete_and_verified ? 'good' : 'bad'),
    );
    const focus = params.get('focus');
    $('timeline').replaceChildren(...t.entries.map((e) => timelineEntry(e, focus && String(e.leaf_index) === focus)));
    setStatus('timeline-status', `${s.events} events in chain order; every signature and chain link re-verified from the stored bytes.${t.truncated ? ' Only the first events are shown (truncated).' : ''}`);
    const target = focus && $(`leaf-${focus}`);
    if (target) { target.scrollIntoView({ block: 'center' }); target.focus({ preventScroll: true }); }
    state.timelineQuery = q;
  } catch (err) {
    handleError(err, 'timeline-status');
  }
}

$('timeline-export').addEventListener('click', (e) => doExport(state.timelineQuery ?? {}, e.currentTarget));

// ------------------------------------------------------------------ routing

async function route() {
  // In-page anchors (the skip link) are not routes.
  if (window.location.hash && !window.location.hash.startsWith('#/')) return;
  if (!credential()) { showSignin(); return; }
  const { path, params } = parseHash();
  if (path === '/timeline') {
    showOnly('view-timeline');
    await showTimeline(params);
  } else if (path === '/sessions') {
    showOnly('view-sessions');
    await listSessions(params);
  } else {
    showOnly('view-search');
    state.lastSearchHash = window.location.hash || '#/search';
    fillForm(params);
    state.query = {};
    for (const k of FILTERS) if (params.get(k)) state.query[k] = params.get(k);
    state.cursor = null;
    await runSearch(false);
  }
}

window.addEventListener('hashchange', route);

(async () => {
  if (!credential()) { showSignin(); return; }
  try {
    await loadFacets();
    signedIn();
    await route();
  } catch (err) {
    handleError(err);
    if (!(err instanceof ApiError && err.status === 401)) showSignin(err.message);
  }
})();
