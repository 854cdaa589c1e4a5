// sessiontrail content script: capture in monitored SaaS apps, and hold the
// actions a rule may refuse until the service worker has decided.
//
// Plain JS (wasm is refused on pages with a strict CSP). Registered by the
// service worker only on the hosts of apps in the active rule packs, in
// every frame, at document_start, in the isolated world: the page cannot
// see this code, its variables or its overlays (closed shadow root).
//
// Per event, on the main thread, inside the listener: one closest() for
// the app's selectors, a bounded description of the target (no per-sibling
// loops over long lists, no layout reads), a regex or two for guards, and
// a push onto a queue. The queue goes to the service worker in
// one message per idle slice over one long-lived port; held actions alone
// talk to the worker synchronously (docs/extension.md, "Main-thread cost").
(() => {
  'use strict';

  const FLAG = '__sessiontrail_capture__';
  if (globalThis[FLAG]) return;
  globalThis[FLAG] = true;

  const TEXT_MAX = 120;
  const PATH_STEPS = 5; // levels of target.path, anchor included
  const SIBLING_SCAN = 32; // siblings a path step counts before a binary search
  const TEXT_NODES_MAX = 32; // text nodes read for an element's text
  const FLUSH_TIMEOUT_MS = 200; // an idle slice comes at the latest after this
  const BATCH_MAX = 100; // observations per message
  const PORT_NAME = 'sessiontrail/observe';
  const DRAIN_MAX_MS = 3000; // a held action waits at most this for the queue
  const ALLOWANCE_MS = 60_000;
  const INTERACTIVE =
    'a[href],button,input,select,textarea,label,summary,[role=button],[role=link],[role=menuitem],[role=tab],[role=checkbox],[role=switch]';

  // ------------------------------------------------------------ guard table

  let app; // undefined: table not loaded yet; null: not a monitored app
  let live = true;

  function topUrl(href = location.href) {
    if (!href.startsWith('about:')) return href;
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
    // The selectors this browser parses (one it does not never matches),
    // and all of them as one list: a single closest() tells whether any
    // matches, which for most events is none.
    const probe = document.createDocumentFragment();
    const selectors = a.selectors.filter((s) => {
      try {
        probe.querySelector(s);
        return true;
      } catch {
        return false;
      }
    });
    return {
      id: a.id,
      selectors,
      anySelector: selectors.join(', '),
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

  // Settles once the first table is read (app is no longer undefined).
  const tableLoaded = chrome.storage.local.get('guard').then(
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
    // The real target inside open shadow roots; composedPath() (an array
    // of the whole path) only when the target is a shadow host.
    let t = e.target;
    if (t && t.shadowRoot && typeof e.composedPath === 'function') t = e.composedPath()[0] || t;
    if (t && t.nodeType !== 1) t = t.parentElement || null;
    return t && t.nodeType === 1 ? t : null;
  }

  const SPACE = /\s/;
  function clip(s) {
    s = String(s ?? '');
    if (s.length <= TEXT_MAX && !SPACE.test(s)) return s;
    // Collapse only what can be kept: the input may be a long text.
    if (s.length > TEXT_MAX * 4) s = s.slice(0, TEXT_MAX * 4);
    s = s.replace(/\s+/g, ' ').trim();
    return s.length > TEXT_MAX ? `${s.slice(0, TEXT_MAX)}…` : s;
  }

  function shortText(el) {
    if (el.localName === 'input') return clip(el.type === 'button' || el.type === 'submit' || el.type === 'reset' ? el.value : '');
    if (el.localName === 'select' || el.localName === 'textarea') return '';
    // A leaf: its textContent is one short string. Otherwise read text
    // nodes until enough is read (textContent of a table would copy it all).
    if (!el.firstElementChild) return clip(el.textContent);
    let out = '';
    const w = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
    for (let n = w.nextNode(), k = 0; n && out.length < TEXT_MAX && k < TEXT_NODES_MAX; n = w.nextNode(), k++) out += `${n.data} `;
    return clip(out);
  }

  function accName(el, text) {
    if (!el.hasAttributes() && !el.labels?.length) return text;
    const a = el.getAttribute('aria-label');
    if (a) return clip(a);
    const by = el.getAttribute('aria-labelledby');
    if (by) {
      const root = el.getRootNode();
      const l = by
        .split(/\s+/, 4)
        .map((id) => root.getElementById?.(id)?.textContent ?? '')
        .join(' ');
      if (l.trim()) return clip(l);
    }
    if (el.labels && el.labels.length) return clip(el.labels[0].textContent);
    return clip(el.getAttribute('title') || el.getAttribute('alt') || el.getAttribute('placeholder') || text);
  }

  const ROLES = { a: 'link', button: 'button', select: 'combobox', textarea: 'textbox', form: 'form', summary: 'button' };
  function role(el) {
    const r = el.hasAttributes() ? el.getAttribute('role') : null;
    if (r) return r;
    if (el.localName === 'input') {
      const t = el.type;
      return t === 'checkbox' || t === 'radio' ? t : ['button', 'submit', 'reset', 'image'].includes(t) ? 'button' : 'textbox';
    }
    return ROLES[el.localName] ?? '';
  }

  const PLAIN_VALUE = /^[^"\\\n\r\f]{0,80}$/;
  const PLAIN_ID = /^[A-Za-z_][\w-]*$/;
  const cssString = (v) =>
    PLAIN_VALUE.test(v) ? `"${v}"` : `"${v.slice(0, 80).replace(/["\\]/g, '\\$&').replace(/[\n\r\f]/g, ' ')}"`;
  const ANCHORS = ['data-testid', 'name'];
  const KEYS = ['data-id', 'data-key'];
  const FOLLOWING = Node.DOCUMENT_POSITION_FOLLOWING;

  /**
   * 1-based position of `n` (tag `tag`) among its parent's element
   * children, or 0 when it has no element sibling.
   */
  function childIndex(n, tag) {
    let s = n.previousElementSibling;
    if (!s) return n.nextElementSibling ? 1 : 0;
    // Table rows know their index natively; it is the position among the
    // parent's children unless the section holds other elements (checked).
    if (tag === 'tr') {
      const hint = n.sectionRowIndex;
      if (hint > SIBLING_SCAN && n.parentNode.children[hint] === n) return hint + 1;
    }
    let i = 2;
    for (s = s.previousElementSibling; s && i <= SIBLING_SCAN; s = s.previousElementSibling) i++;
    if (!s) return i;
    // A long list: binary search with the engine's own sibling order
    // (O(log n) calls) rather than a JS loop over every earlier row.
    const c = n.parentNode.children;
    let lo = 0;
    let hi = c.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const m = c[mid];
      if (m === n) return mid + 1;
      if (m.compareDocumentPosition(n) & FOLLOWING) lo = mid + 1;
      else hi = mid - 1;
    }
    return lo + 1;
  }

  /**
   * target.path (docs/formats.md): at most PATH_STEPS steps, from the
   * nearest anchor (id, data-testid, name) or the PATH_STEPS-th ancestor
   * down to the element.
   */
  function cssPath(el) {
    const parts = [];
    let n = el;
    for (let i = 0; n && i < PATH_STEPS; n = n.parentElement, i++) {
      const tag = n.localName;
      if (!n.hasAttributes()) {
        const k = childIndex(n, tag);
        parts.push(k ? `${tag}:nth-child(${k})` : tag);
        continue;
      }
      const id = n.id;
      if (id) {
        parts.push(`${tag}#${PLAIN_ID.test(id) ? id : CSS.escape(id)}`);
        break;
      }
      let anchor = '';
      for (const a of ANCHORS) {
        const v = n.getAttribute(a);
        if (v) {
          anchor = `${tag}[${a}=${cssString(v)}]`;
          break;
        }
      }
      if (anchor) {
        parts.push(anchor);
        break;
      }
      let key = '';
      for (const a of KEYS) {
        const v = n.getAttribute(a);
        if (v) {
          key = `${tag}[${a}=${cssString(v)}]`;
          break;
        }
      }
      if (key) parts.push(key);
      else {
        const k = childIndex(n, tag);
        parts.push(k ? `${tag}:nth-child(${k})` : tag);
      }
    }
    if (el.getRootNode() instanceof ShadowRoot) parts.push('#shadow-root');
    return parts.reverse().join(' > ');
  }

  function matched(el) {
    const out = [];
    if (!app || !app.anySelector || !el.closest(app.anySelector)) return out;
    for (const s of app.selectors) if (el.closest(s)) out.push(s);
    return out;
  }

  function target(el) {
    const text = shortText(el);
    return { tag: el.localName, role: role(el), name: accName(el, text), path: cssPath(el), text, selectors: matched(el) };
  }

  // The identity element, kept while it stays in the document: a selector
  // query per event could scan the whole page.
  // Its value is kept too, until a MutationObserver on that one element
  // (never the page) says it changed.
  let idEl = null;
  let idSel = '';
  let idValue = null;
  const idWatch = new MutationObserver(() => {
    idValue = null;
  });
  function user() {
    const id = app && app.identity;
    if (!id) return '';
    try {
      if (!idEl || idSel !== id.selector || !idEl.isConnected) {
        idSel = id.selector;
        idValue = null;
        idWatch.disconnect();
        idEl = document.querySelector(id.selector) || window.top.document.querySelector(id.selector);
        if (!idEl) return '';
        if (id.attribute) idWatch.observe(idEl, { attributes: true, attributeFilter: [id.attribute] });
        else idWatch.observe(idEl, { characterData: true, childList: true, subtree: true });
      }
      if (idValue === null) idValue = clip(id.attribute ? idEl.getAttribute(id.attribute) : idEl.textContent);
      return idValue;
    } catch {
      idEl = null;
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

  // Routine observations are queued in the listener and sent in one
  // `observeBatch` per idle slice, over one long-lived port. A batch stays
  // in `unacked` until the worker answers that it is committed; when the
  // port goes down (the worker was stopped or evicted) every unacked batch
  // is sent again with sendMessage, which starts a worker, and the next
  // flush connects again. Before a held action's `guard`, everything queued
  // is sent and acknowledged, so the worker records in page order.
  const queue = [];
  const unacked = new Map(); // batch id → {list, via: the port it was posted on, or null}
  let port = null;
  let nextBatch = 1;
  let flushPending = false;
  let drainWaiters = [];

  function scheduleFlush() {
    if (flushPending) return;
    flushPending = true;
    if (typeof requestIdleCallback === 'function') requestIdleCallback(flush, { timeout: FLUSH_TIMEOUT_MS });
    else setTimeout(flush, 0);
  }

  function settled(id) {
    unacked.delete(id);
    if (unacked.size === 0 && queue.length === 0 && drainWaiters.length) {
      const w = drainWaiters;
      drainWaiters = [];
      for (const f of w) f();
    }
  }

  function resend(id, list, wait = 1000) {
    const b = unacked.get(id);
    if (b) b.via = null;
    send({ t: 'observeBatch', obs: list }).then(
      () => settled(id),
      () => {
        // Only when the extension is gone (nothing can take it) is a
        // batch given up; otherwise try again, backing off to 30 s.
        if (!live) settled(id);
        else setTimeout(() => resend(id, list, Math.min(wait * 2, 30_000)), wait);
      },
    );
  }

  function openPort() {
    if (port) return port;
    try {
      const p = chrome.runtime.connect({ name: PORT_NAME });
      p.onMessage.addListener(function onAck(m) {
        if (m && m.t === 'ack') settled(m.id);
      });
      p.onDisconnect.addListener(() => {
        void chrome.runtime.lastError;
        if (port === p) port = null;
        for (const [id, b] of unacked) if (b.via === p) resend(id, b.list);
      });
      port = p;
    } catch {
      // The extension was reloaded or removed.
      live = false;
      port = null;
    }
    return port;
  }

  function flush() {
    flushPending = false;
    while (queue.length && live) {
      const list = queue.splice(0, BATCH_MAX);
      const id = nextBatch++;
      const p = openPort();
      unacked.set(id, { list, via: p });
      try {
        if (!p) throw new Error('no port');
        p.postMessage({ t: 'observeBatch', id, obs: list });
      } catch {
        if (port === p) port = null;
        resend(id, list);
      }
    }
    if (!live) queue.length = 0;
  }

  /**
   * Everything queued so far is committed by the worker, or DRAIN_MAX_MS
   * passed (a held action is never stuck behind a worker that cannot
   * answer; its `guard` then says so itself).
   */
  function drained() {
    flush();
    if (unacked.size === 0) return Promise.resolve();
    return new Promise((r) => {
      drainWaiters.push(r);
      setTimeout(r, DRAIN_MAX_MS);
    });
  }

  let lastUrl = location.href;

  function obs(kind, e, el, fields = [], href = location.href) {
    return {
      kind,
      url: topUrl(href),
      user: user(),
      target: el ? target(el) : null,
      trusted: e ? e.isTrusted === true : true,
      fields,
      action_id: null,
    };
  }

  function record(o) {
    if (app === null || !live) return;
    queue.push(o);
    scheduleFlush();
  }

  // With the Navigation API, `currententrychange` reports every change of
  // this document's URL (push/replaceState, hash, traversals) as it
  // happens, so lastUrl is current and an event need not read location.
  const NAV = !!(window.navigation && typeof window.navigation.addEventListener === 'function');
  let urlTracked = false;

  /** The current URL; records a route change not recorded yet. */
  function here() {
    return urlTracked ? lastUrl : checkUrl();
  }

  /** Records a route change the navigation events missed; returns location.href. */
  function checkUrl() {
    const u = location.href;
    if (u === lastUrl) return u;
    const from = lastUrl;
    lastUrl = u;
    record(obs({ type: 'route_change', from }, null, null, [], u));
    return u;
  }

  // --------------------------------------------------------------- holding

  let bypass = null; // {kind, el}: the one replay in flight
  const allowance = {}; // kind → until (ms): non-replayable actions allowed once

  let pathOf = ['', '/']; // [url, its path]: parsed once per URL
  function guardFor(kind, el, t, url) {
    if (app === undefined) {
      // The table is not loaded yet (first milliseconds of the page): hold
      // what could be guarded and let the service worker decide.
      return kind === 'submit' || (kind === 'click' && el.closest(INTERACTIVE)) ? { response: 'unknown' } : null;
    }
    if (!app) return null;
    if (pathOf[0] !== url) {
      let p = '/';
      try {
        p = new URL(url).pathname;
      } catch {
        p = location.pathname;
      }
      pathOf = [url, p];
    }
    const path = pathOf[1];
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

  function hold(e, o, replay, replayable, el) {
    e.preventDefault();
    e.stopImmediatePropagation();
    o.action_id = newId();
    const wait = setTimeout(() => overlay.show({ mode: 'wait' }), 300);
    // Held before the table was loaded (a page that acts at once, e.g. a
    // script clicking on load): describe the target again with the app's
    // selectors, or the worker would classify it without them and let a
    // guarded action through.
    const described =
      app === undefined && el
        ? tableLoaded.then(() => {
            if (app) {
              o.target = target(el);
              o.user = user();
            }
          })
        : Promise.resolve();
    // Everything queued before this action is recorded first (page order).
    described
      .then(drained)
      .then(() => send({ t: 'guard', obs: o }))
      .then(
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
    const href = here();
    const el = raw.closest(INTERACTIVE) || raw;
    const o = obs({ type: 'click' }, e, el, [], href);
    const g = guardFor('click', el, o.target, o.url);
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
    hold(e, o, replay, true, el);
  }

  function onSubmit(e) {
    if (!live || app === null) return;
    const form = element(e);
    if (!form || form.localName !== 'form') return;
    if (bypassed('submit', form)) return;
    const href = here();
    const o = obs({ type: 'submit' }, e, form, formFields(form), href);
    const g = guardFor('submit', form, o.target, o.url);
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
    hold(e, o, replay, true, form);
  }

  function onChange(e) {
    if (!live || app === null) return;
    const el = element(e);
    if (!el || !/^(input|select|textarea)$/.test(el.localName)) return;
    const href = here();
    if (el.type === 'file') {
      const o = obs({ type: 'upload', files: files(el.files) }, e, el, [], href);
      const g = guardFor('upload', el, o.target, o.url);
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
    record(obs({ type: 'input' }, e, el, fields, href));
  }

  function onClipboard(e) {
    if (!live || app === null || overlay.owns(e)) return;
    const href = here();
    const el = element(e) || document.activeElement || document.body;
    const kind = e.type;
    const o = obs({ type: kind }, e, el, [], href);
    const g = guardFor(kind, el, o.target, o.url);
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
    const g = el ? guardFor('upload', el, o.target, o.url) : null;
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
  // Leaving the page (navigation, tab close, back/forward cache): send
  // what is queued now; a port message is on its way once posted.
  window.addEventListener('pagehide', flush, opts);
  document.addEventListener('visibilitychange', () => document.visibilityState === 'hidden' && flush(), opts);
  window.addEventListener('hashchange', checkUrl, opts);
  if (NAV) {
    // The Navigation API reports pushState/replaceState, traversals and
    // hash changes to the isolated world too; no page script is injected.
    window.navigation.addEventListener('navigatesuccess', checkUrl);
    window.navigation.addEventListener('currententrychange', checkUrl);
    urlTracked = NAV && lastUrl === location.href;
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
