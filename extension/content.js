// sessiontrail content script: capture in monitored SaaS apps, and hold the
// actions a rule may refuse until the service worker has decided.
//
// Plain JS (wasm is refused on pages with a strict CSP). Registered by the
// service worker only on the hosts of apps in the active rule packs, in
// every frame, at document_start, in the isolated world: the page cannot
// see this code, its variables or its overlays (closed shadow root).
//
// Per event, on the main thread: one closest() per selector of the app's
// table, a bounded description of the target, a regex or two for guards,
// and one message. No DOM scans, no layout reads.
(() => {
  'use strict';

  const FLAG = '__sessiontrail_capture__';
  if (globalThis[FLAG]) return;
  globalThis[FLAG] = true;

  const TEXT_MAX = 120;
  const ALLOWANCE_MS = 60_000;
  const INTERACTIVE =
    'a[href],button,input,select,textarea,label,summary,[role=button],[role=link],[role=menuitem],[role=tab],[role=checkbox],[role=switch]';

  // ------------------------------------------------------------ guard table

  let app; // undefined: table not loaded yet; null: not a monitored app
  let live = true;

  function topUrl() {
    // about:blank / srcdoc frames inherit their parent's origin: describe
    // them by the nearest same-origin ancestor's URL.
    let w = window;
    try {
      while (w.location.href === 'about:blank' || w.location.protocol === 'about:') {
        if (w === w.parent) break;
        w = w.parent;
      }
      return w.location.href;
    } catch {
      return location.href;
    }
  }

  function compile(a) {
    const re = (s, f) => (s ? new RegExp(s, f) : null);
    return {
      id: a.id,
      selectors: a.selectors,
      identity: a.identity,
      guards: a.guards.map((g) => ({
        title: g.title,
        response: g.response,
        actions: new Set(g.actions),
        path: re(g.path_regex, ''),
        selector: g.selector,
        name: re(g.name_regex, 'i'),
        text: re(g.text_regex, 'i'),
      })),
    };
  }

  function setTable(t) {
    if (!t || t.version !== 1) {
      app = null;
      return;
    }
    let host = '';
    try {
      host = new URL(topUrl()).hostname;
    } catch {
      host = location.hostname;
    }
    const a = t.apps.find((x) => x.host_regex.some((s) => new RegExp(s, 'i').test(host)));
    app = a ? compile(a) : null;
  }

  chrome.storage.local.get('guard').then(
    (r) => setTable(r.guard),
    () => {
      app = null;
    },
  );
  chrome.storage.onChanged.addListener((changes, area) => {
    if (area === 'local' && changes.guard) setTable(changes.guard.newValue);
  });

  // -------------------------------------------------------------- describe

  function element(e) {
    const p = typeof e.composedPath === 'function' ? e.composedPath() : [];
    let t = p[0] || e.target;
    if (t && t.nodeType !== 1) t = t.parentElement || null;
    return t && t.nodeType === 1 ? t : null;
  }

  function clip(s) {
    s = String(s ?? '').replace(/\s+/g, ' ').trim();
    return s.length > TEXT_MAX ? `${s.slice(0, TEXT_MAX)}…` : s;
  }

  function shortText(el) {
    if (el.localName === 'input') return clip(['button', 'submit', 'reset'].includes(el.type) ? el.value : '');
    if (el.localName === 'select' || el.localName === 'textarea') return '';
    let out = '';
    const w = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
    for (let n = w.nextNode(); n && out.length < TEXT_MAX; n = w.nextNode()) out += `${n.data} `;
    return clip(out);
  }

  function accName(el, text) {
    const a = el.getAttribute('aria-label');
    if (a) return clip(a);
    const by = el.getAttribute('aria-labelledby');
    if (by) {
      const root = el.getRootNode();
      const l = by
        .split(/\s+/)
        .map((id) => root.getElementById?.(id)?.textContent ?? '')
        .join(' ');
      if (l.trim()) return clip(l);
    }
    if (el.labels && el.labels.length) return clip(el.labels[0].textContent);
    return clip(el.getAttribute('title') || el.getAttribute('alt') || el.getAttribute('placeholder') || text);
  }

  const ROLES = { a: 'link', button: 'button', select: 'combobox', textarea: 'textbox', form: 'form', summary: 'button' };
  function role(el) {
    const r = el.getAttribute('role');
    if (r) return r;
    if (el.localName === 'input') {
      const t = el.type;
      return t === 'checkbox' || t === 'radio' ? t : ['button', 'submit', 'reset', 'image'].includes(t) ? 'button' : 'textbox';
    }
    return ROLES[el.localName] ?? '';
  }

  function cssPath(el) {
    const parts = [];
    for (let n = el, i = 0; n && n.nodeType === 1 && i < 5; n = n.parentElement, i++) {
      if (n.id) {
        parts.unshift(`${n.localName}#${n.id}`);
        break;
      }
      let k = 1;
      for (let s = n.previousElementSibling; s; s = s.previousElementSibling) if (s.localName === n.localName) k++;
      parts.unshift(k > 1 ? `${n.localName}:nth-of-type(${k})` : n.localName);
    }
    if (el.getRootNode() instanceof ShadowRoot) parts.unshift('#shadow-root');
    return parts.join(' > ');
  }

  function matched(el) {
    const out = [];
    if (!app) return out;
    for (const s of app.selectors) {
      try {
        if (el.closest(s)) out.push(s);
      } catch {
        // A selector this browser does not parse never matches.
      }
    }
    return out;
  }

  function target(el) {
    const text = shortText(el);
    return { tag: el.localName, role: role(el), name: accName(el, text), path: cssPath(el), text, selectors: matched(el) };
  }

  function user() {
    const id = app && app.identity;
    if (!id) return '';
    try {
      const el = document.querySelector(id.selector) || window.top.document.querySelector(id.selector);
      if (!el) return '';
      return clip(id.attribute ? el.getAttribute(id.attribute) : el.textContent);
    } catch {
      return '';
    }
  }

  function fieldKind(el) {
    const t = (el.type || '').toLowerCase();
    if (el.localName === 'select') return 'select';
    if (t === 'email') return 'email';
    if (t === 'number' || t === 'range') return 'number';
    if (t === 'checkbox' || t === 'radio') return 'checkbox';
    if (t === 'hidden') return 'hidden';
    if (t === 'password') return 'password';
    return 'text';
  }

  function formFields(form) {
    const out = [];
    for (const el of form.elements) {
      const t = (el.type || '').toLowerCase();
      if (!el.name || el.disabled) continue;
      // Password values never leave the page, not even to the extension.
      if (t === 'password' || t === 'file' || ['submit', 'button', 'reset', 'image'].includes(t)) continue;
      if ((t === 'checkbox' || t === 'radio') && !el.checked) continue;
      out.push({ name: el.name, value: String(el.value ?? '').slice(0, 4000), kind: fieldKind(el) });
      if (out.length >= 200) break;
    }
    return out;
  }

  function files(list) {
    return Array.from(list || [])
      .slice(0, 100)
      .map((f) => ({ name: f.name, mime: f.type || '', bytes: f.size }));
  }

  // --------------------------------------------------------------- sending

  function send(msg) {
    if (!live) return Promise.reject(new Error('inactive'));
    try {
      return chrome.runtime.sendMessage(msg);
    } catch (e) {
      // The extension was reloaded or removed: this copy goes quiet.
      live = false;
      return Promise.reject(e);
    }
  }

  let lastUrl = location.href;

  function obs(kind, e, el, extra = {}) {
    return {
      kind,
      url: topUrl(),
      user: user(),
      target: el ? target(el) : null,
      trusted: e ? e.isTrusted === true : true,
      fields: [],
      action_id: null,
      ...extra,
    };
  }

  function record(o) {
    if (app === null) return;
    send({ t: 'observe', obs: o }).catch(() => {});
  }

  function checkUrl() {
    const u = location.href;
    if (u === lastUrl) return;
    const from = lastUrl;
    lastUrl = u;
    record(obs({ type: 'route_change', from }, null, null));
  }

  // --------------------------------------------------------------- holding

  let bypass = null; // {kind, el}: the one replay in flight
  const allowance = {}; // kind → until (ms): non-replayable actions allowed once

  function guardFor(kind, el, t) {
    if (app === undefined) {
      // The table is not loaded yet (first milliseconds of the page): hold
      // what could be guarded and let the service worker decide.
      return kind === 'submit' || (kind === 'click' && el.closest(INTERACTIVE)) ? { response: 'unknown' } : null;
    }
    if (!app) return null;
    let path = '/';
    try {
      path = new URL(topUrl()).pathname;
    } catch {
      path = location.pathname;
    }
    for (const g of app.guards) {
      if (!g.actions.has(kind)) continue;
      if (g.path && !g.path.test(path)) continue;
      if (g.selector && !t.selectors.includes(g.selector)) continue;
      if (g.name && !g.name.test(t.name)) continue;
      if (g.text && !g.text.test(t.text)) continue;
      return g;
    }
    return null;
  }

  // crypto.randomUUID() exists only in secure contexts; apps on plain
  // http (intranets, the fixtures) still need ids.
  function newId() {
    const b = crypto.getRandomValues(new Uint8Array(12));
    return `a-${Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('')}`;
  }

  function hold(e, o, replay, replayable) {
    e.preventDefault();
    e.stopImmediatePropagation();
    o.action_id = newId();
    const wait = setTimeout(() => overlay.show({ mode: 'wait' }), 300);
    send({ t: 'guard', obs: o }).then(
      (d) => {
        clearTimeout(wait);
        decide(d ?? { response: 'log' }, replay, replayable);
      },
      () => {
        clearTimeout(wait);
        if (!live) {
          // Extension gone: stay out of the way.
          replay();
          return;
        }
        overlay.show({
          mode: 'notice',
          title: 'This action could not be checked',
          body: 'sessiontrail could not reach its service. Please try again in a moment.',
        });
      },
    );
  }

  function allowLater(kind) {
    allowance[kind] = Date.now() + ALLOWANCE_MS;
  }

  function go(replay, replayable, kind) {
    overlay.hide();
    if (replayable) replay();
    else {
      allowLater(kind);
      overlay.show({ mode: 'notice', title: 'Allowed', body: 'You can now repeat the action.' });
    }
  }

  function decide(d, replay, replayable) {
    const kind = replay.kind;
    const resolve = (outcome, justification) =>
      send({ t: 'resolve', actionId: d.actionId, outcome, justification }).catch(() => ({ ok: false }));
    switch (d.response) {
      case 'warn':
        overlay.show({
          mode: 'confirm',
          title: 'Please confirm',
          body: `${d.title}. This action is recorded.`,
          ok: 'Continue',
          cancel: 'Cancel',
          onOk: async () => {
            await resolve('allowed');
            go(replay, replayable, kind);
          },
          onCancel: () => resolve('refused'),
        });
        return;
      case 'justify':
        overlay.show({
          mode: 'justify',
          title: 'A business reason is required',
          body: `${d.title}. Your reason is recorded with the action.`,
          ok: 'Continue',
          cancel: 'Cancel',
          onOk: async (text) => {
            const r = await resolve('allowed', text);
            if (r && r.ok) go(replay, replayable, kind);
            else overlay.show({ mode: 'notice', title: 'Not recorded', body: 'Please type a reason of a few words.' });
          },
          onCancel: () => resolve('refused', null),
        });
        return;
      case 'step_up':
        overlay.show({
          mode: 'confirm',
          title: 'Confirm it is you',
          body: `${d.title}. Sign in again with your organisation's account to continue.`,
          ok: 'Sign in',
          cancel: 'Cancel',
          onOk: async () => {
            overlay.show({ mode: 'wait', title: 'Waiting for sign-in…' });
            const r = await send({ t: 'stepUp', actionId: d.actionId }).catch(() => ({ ok: false }));
            if (r && r.ok) go(replay, replayable, kind);
            else
              overlay.show({
                mode: 'notice',
                title: 'Not verified',
                body: `The action was not performed${r && r.error ? `: ${r.error.message}` : '.'}`,
              });
          },
          onCancel: () => resolve('refused'),
        });
        return;
      case 'block':
        overlay.show({ mode: 'notice', title: 'Blocked by your organisation', body: `${d.title}. The action was not performed and this was recorded.` });
        return;
      case 'terminate':
        overlay.show({ mode: 'notice', title: 'Session ended', body: `${d.title}. You have been signed out of this app.` });
        return;
      default:
        overlay.hide();
        replay();
    }
  }

  function bypassed(kind, el) {
    return bypass && bypass.kind === kind && (bypass.el === el || (el && bypass.el.contains(el)));
  }

  function allowed(kind) {
    if ((allowance[kind] ?? 0) > Date.now()) {
      delete allowance[kind];
      return true;
    }
    return false;
  }

  // ------------------------------------------------------------- listeners

  function onClick(e) {
    if (!live || app === null || overlay.owns(e)) return;
    const raw = element(e);
    if (!raw) return;
    if (bypassed('click', raw)) return;
    checkUrl();
    const el = raw.closest(INTERACTIVE) || raw;
    const o = obs({ type: 'click' }, e, el);
    const g = guardFor('click', el, o.target);
    if (!g) return record(o);
    const replay = () => {
      bypass = { kind: 'click', el };
      try {
        el.click();
      } finally {
        bypass = null;
      }
    };
    replay.kind = 'click';
    hold(e, o, replay, true);
  }

  function onSubmit(e) {
    if (!live || app === null) return;
    const form = element(e);
    if (!form || form.localName !== 'form') return;
    if (bypassed('submit', form)) return;
    checkUrl();
    const o = obs({ type: 'submit' }, e, form, { fields: formFields(form) });
    const g = guardFor('submit', form, o.target);
    if (!g) return record(o);
    const submitter = e.submitter && e.submitter.form === form ? e.submitter : null;
    const replay = () => {
      bypass = { kind: 'submit', el: form };
      try {
        form.requestSubmit(submitter);
      } finally {
        bypass = null;
      }
    };
    replay.kind = 'submit';
    hold(e, o, replay, true);
  }

  function onChange(e) {
    if (!live || app === null) return;
    const el = element(e);
    if (!el || !/^(input|select|textarea)$/.test(el.localName)) return;
    checkUrl();
    if (el.type === 'file') {
      const o = obs({ type: 'upload', files: files(el.files) }, e, el);
      const g = guardFor('upload', el, o.target);
      if (g && !allowed('upload')) {
        // A chosen file cannot be held: clear it, ask, and let the user
        // choose it again if allowed.
        el.value = '';
        const replay = () => {};
        replay.kind = 'upload';
        hold(e, o, replay, false);
        return;
      }
      return record(o);
    }
    const fields = el.type === 'password' || !el.name ? [] : [{ name: el.name, value: String(el.value ?? '').slice(0, 4000), kind: fieldKind(el) }];
    record(obs({ type: 'input' }, e, el, { fields }));
  }

  function onClipboard(e) {
    if (!live || app === null || overlay.owns(e)) return;
    checkUrl();
    const el = element(e) || document.activeElement || document.body;
    const kind = e.type;
    const o = obs({ type: kind }, e, el);
    const g = guardFor(kind, el, o.target);
    if (!g || allowed(kind)) return record(o);
    const replay = () => {};
    replay.kind = kind;
    hold(e, o, replay, false);
  }

  function onDrop(e) {
    if (!live || app === null) return;
    const list = e.dataTransfer && e.dataTransfer.files;
    if (!list || list.length === 0) return;
    const el = element(e);
    const o = obs({ type: 'upload', files: files(list) }, e, el);
    const g = el ? guardFor('upload', el, o.target) : null;
    if (!g || allowed('upload')) return record(o);
    const replay = () => {};
    replay.kind = 'upload';
    hold(e, o, replay, false);
  }

  function onPrint(e) {
    if (!live || app === null) return;
    // beforeprint cannot be cancelled: printing is recorded, not held.
    record(obs({ type: 'print' }, e, null));
  }

  const opts = { capture: true };
  window.addEventListener('click', onClick, opts);
  window.addEventListener('auxclick', (e) => e.button === 1 && onClick(e), opts);
  window.addEventListener('submit', onSubmit, opts);
  window.addEventListener('change', onChange, opts);
  window.addEventListener('copy', onClipboard, opts);
  window.addEventListener('cut', onClipboard, opts);
  window.addEventListener('paste', onClipboard, opts);
  window.addEventListener('drop', onDrop, opts);
  window.addEventListener('beforeprint', onPrint, opts);
  window.addEventListener('popstate', checkUrl, opts);
  window.addEventListener('hashchange', checkUrl, opts);
  if (window.navigation && typeof window.navigation.addEventListener === 'function') {
    // The Navigation API reports pushState/replaceState, traversals and
    // hash changes to the isolated world too; no page script is injected.
    window.navigation.addEventListener('navigatesuccess', checkUrl);
    window.navigation.addEventListener('navigate', () => setTimeout(checkUrl, 0));
  }

  // The page load itself, once the table says this is an app.
  (function pageLoad() {
    if (app === undefined) {
      setTimeout(pageLoad, 5);
      return;
    }
    if (app) record(obs({ type: 'page_load' }, null, null));
  })();

  chrome.runtime.onMessage.addListener((msg) => {
    if (!msg || msg.t !== 'prompt' || window !== window.top) return;
    // A response fired on an action that could not be held (a session
    // threshold, a download): prompt after the fact.
    const noop = () => {};
    noop.kind = '';
    decide({ response: msg.response, actionId: msg.actionId, title: msg.title }, noop, true);
  });

  // ---------------------------------------------------------------- overlay

  const overlay = (() => {
    let host = null;
    let root = null;
    const CSS = `
      :host { all: initial; }
      .scrim { position: fixed; inset: 0; background: rgba(20,20,24,.45); display: flex; align-items: center; justify-content: center; z-index: 2147483647; font: 14px/1.45 system-ui, sans-serif; }
      .box { background: #fff; color: #1b1b1f; max-width: 420px; width: calc(100% - 48px); border-radius: 10px; padding: 20px 22px; box-shadow: 0 12px 40px rgba(0,0,0,.3); }
      h2 { font-size: 16px; margin: 0 0 8px; }
      p { margin: 0 0 14px; }
      small { color: #5b5b66; display: block; margin-top: 10px; }
      textarea { width: 100%; box-sizing: border-box; min-height: 72px; font: inherit; padding: 6px; margin-bottom: 12px; }
      .row { display: flex; gap: 8px; justify-content: flex-end; }
      button { font: inherit; padding: 6px 14px; border-radius: 6px; border: 1px solid #767680; background: #fff; cursor: pointer; }
      button.primary { background: #1d4ed8; border-color: #1d4ed8; color: #fff; }
    `;
    function ensure() {
      if (host && host.isConnected) return;
      host = document.createElement('sessiontrail-overlay');
      root = host.attachShadow({ mode: 'closed' });
      try {
        const sheet = new CSSStyleSheet();
        sheet.replaceSync(CSS);
        root.adoptedStyleSheets = [sheet];
      } catch {
        // No constructable stylesheets: unstyled but working.
      }
      (document.documentElement || document).appendChild(host);
    }
    function el(tag, text, cls) {
      const n = document.createElement(tag);
      if (text) n.textContent = text;
      if (cls) n.className = cls;
      return n;
    }
    function show(o) {
      ensure();
      root.replaceChildren();
      const scrim = el('div', '', 'scrim');
      const box = el('div', '', 'box');
      box.setAttribute('role', 'dialog');
      box.setAttribute('aria-modal', 'true');
      box.append(el('h2', o.title || 'Checking this action…'));
      if (o.body) box.append(el('p', o.body));
      let area = null;
      if (o.mode === 'justify') {
        area = el('textarea');
        area.setAttribute('aria-label', 'Business reason');
        area.maxLength = 2000;
        box.append(area);
      }
      const row = el('div', '', 'row');
      if (o.mode === 'confirm' || o.mode === 'justify') {
        const c = el('button', o.cancel || 'Cancel');
        c.onclick = () => {
          hide();
          o.onCancel?.();
        };
        const ok = el('button', o.ok || 'Continue', 'primary');
        ok.onclick = () => o.onOk?.(area ? area.value : undefined);
        row.append(c, ok);
      } else if (o.mode === 'notice') {
        const ok = el('button', 'OK', 'primary');
        ok.onclick = hide;
        row.append(ok);
      }
      box.append(row);
      box.append(el('small', 'sessiontrail — your organisation monitors actions in this app. See the extension icon for details.'));
      scrim.append(box);
      root.append(scrim);
      (area || row.querySelector('.primary'))?.focus();
    }
    function hide() {
      if (host) host.remove();
      host = null;
      root = null;
    }
    return { show, hide, owns: (e) => !!host && e.composedPath().includes(host) };
  })();
})();
