// sessiontrail content script: capture in monitored SaaS apps, and hold the
// actions a rule may refuse until the service worker has decided.
//
// Plain JS (wasm is refused on pages with a strict CSP). Registered by the
// service worker only on the hosts of apps in the active rule packs, in
// every frame, at document_start, in the isolated world: the page cannot
// see this code, its variables or its overlays (closed shadow root).
//
// Per event, on the main thread, inside the listener: the guard decision
// and a snapshot of what the page may change next (one or two closest()
// calls, the text, the naming attributes; no layout reads), pushed onto a
// queue. At most a second later (at once when the page is hidden or left)
// the queue is described in full and goes to the service worker in one
// message over one long-lived port; held actions alone talk to the worker
// at once (docs/extension.md, "Main-thread cost").
(() => {
  'use strict';

  const FLAG = '__sessiontrail_capture__';
  if (globalThis[FLAG]) return;
  globalThis[FLAG] = true;

  const TEXT_MAX = 120;
  const PATH_STEPS = 5; // levels of target.path, anchor included
  const SIBLING_SCAN = 32; // siblings a path step counts before a binary search
  const TEXT_NODES_MAX = 32; // text nodes read for an element's text
  const FLUSH_DELAY_MS = 1000; // a routine event waits at most this before it is sent
  const BATCH_MAX = 100; // observations per message
  const PORT_NAME = 'sessiontrail/observe';
  const DRAIN_MAX_MS = 3000; // a held action waits at most this for the queue
  const ALLOW_ONCE_MS = 30_000; // an approved copy/cut/paste/file may be repeated once within this
  const INTERACTIVE =
    'a[href],button,input,select,textarea,label,summary,[role=button],[role=link],[role=menuitem],[role=tab],[role=checkbox],[role=switch]';

  // ------------------------------------------------------------ guard table

  let app; // undefined: table not loaded yet; null: not a monitored app
  let live = true;
  let overlayUp = false; // an overlay is shown (its events are not the page's)
  // Whether a click on plain content may be held (by a rule without a
  // selector) on plainUrl under plainApp's table: worked out once per URL.
  let plainUrl = null;
  let plainApp;
  let plainHeld = false;

  // about:blank / srcdoc frames report their parent's URL (topUrl); a
  // frame's URL never becomes about: later, so this is decided once.
  const INHERITS = location.href.startsWith('about:');
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
      interactiveOrAny: selectors.length ? `${INTERACTIVE}, ${selectors.join(', ')}` : INTERACTIVE,
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
    // Every keystroke would run a keydown listener: there is one only
    // while a rule may hold a print in this app.
    if (app && app.guards.some((g) => g.actions.has('print'))) window.addEventListener('keydown', onKeydown, true);
    else window.removeEventListener('keydown', onKeydown, true);
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
    if (!t) return null;
    if (t.shadowRoot && typeof e.composedPath === 'function') t = e.composedPath()[0] || t;
    return t.nodeType === 1 ? t : t.parentElement || null;
  }

  // Whitespace as JavaScript's \s and String.prototype.trim see it. The
  // checks below are loops, not regexes: a regex is compiled on its first
  // use, which costs more than these loops on the short strings involved.
  function isSpace(c) {
    return c === 32 || (c >= 9 && c <= 13) || (c >= 0xa0 && (c === 0xa0 || c === 0x1680 || (c >= 0x2000 && c <= 0x200a) || c === 0x2028 || c === 0x2029 || c === 0x202f || c === 0x205f || c === 0x3000 || c === 0xfeff));
  }

  /** Whitespace runs collapsed to one space, trimmed, at most TEXT_MAX characters (then "…"). */
  function clip(s) {
    s = String(s ?? '');
    // Collapse only what can be kept: the input may be a long text.
    if (s.length > TEXT_MAX * 4) s = s.slice(0, TEXT_MAX * 4);
    let plain = true; // nothing to collapse or trim
    for (let i = 0, prev = 32; i < s.length && plain; i++) {
      const c = s.charCodeAt(i);
      if (isSpace(c) && (c !== 32 || prev === 32 || i === s.length - 1)) plain = false;
      prev = c;
    }
    if (!plain) {
      const words = [];
      for (let i = 0, from = -1; i <= s.length; i++) {
        const end = i === s.length || isSpace(s.charCodeAt(i));
        if (end && from >= 0) {
          words.push(s.slice(from, i));
          from = -1;
        } else if (!end && from < 0) from = i;
      }
      s = words.join(' ');
    }
    return s.length > TEXT_MAX ? `${s.slice(0, TEXT_MAX)}…` : s;
  }

  // A target is described in two steps. snap() runs in the listener and
  // reads what the page's own handlers may change right after it (the
  // text, the naming attributes, the app selectors the element matches:
  // everything a rule can match) as raw values. describe() runs at the
  // flush, or at once for a held action: it clips those values, works out
  // the role and builds target.path (docs/extension.md, "Main-thread cost").

  function rawText(el, tag, type) {
    if (tag === 'input') return type === 'button' || type === 'submit' || type === 'reset' ? el.value : '';
    if (tag === 'select' || tag === 'textarea') return '';
    // A leaf: its textContent is one short string. Otherwise read text
    // nodes until enough is read (textContent of a table would copy it all).
    if (!el.firstElementChild) return el.textContent;
    let out = '';
    const w = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
    for (let n = w.nextNode(), k = 0; n && out.length < TEXT_MAX && k < TEXT_NODES_MAX; n = w.nextNode(), k++) out += `${n.data} `;
    return out;
  }

  /** The accessible name when something other than the text gives it, else null. */
  function rawName(el) {
    const a = el.getAttribute('aria-label');
    if (a) return a;
    const by = el.getAttribute('aria-labelledby');
    if (by) {
      const root = el.getRootNode();
      const l = by
        .split(/\s+/, 4)
        .map((id) => root.getElementById?.(id)?.textContent ?? '')
        .join(' ');
      if (l.trim()) return l;
    }
    const l = el.labels; // undefined unless labelable, null for <input type=hidden>
    const first = l ? l[0] : undefined;
    if (first) return first.textContent;
    return el.getAttribute('title') || el.getAttribute('alt') || el.getAttribute('placeholder') || null;
  }

  const NONE = Object.freeze([]);
  // Elements that can have <label>s (HTML "labelable elements").
  const LABELABLE = { input: 1, select: 1, textarea: 1, button: 1, meter: 1, output: 1, progress: 1 };

  /**
   * The snapshot taken in the listener. One object literal, few property
   * reads: the first events of a page run before V8 has type feedback for
   * this code, when every property access is a slow lookup.
   */
  function snap(el, selectors) {
    const tag = el.localName;
    const type = tag === 'input' ? el.type : '';
    const attrs = el.hasAttributes();
    let name = null;
    if (attrs) name = rawName(el);
    else if (LABELABLE[tag] === 1) {
      const first = el.labels[0]; // one DOM call fewer than checking length
      if (first) name = first.textContent;
    }
    return {
      el,
      tag,
      type,
      text: rawText(el, tag, type),
      name,
      role: attrs ? el.getAttribute('role') : null,
      selectors: selectors ?? matched(el),
    };
  }

  const ROLES = { a: 'link', button: 'button', select: 'combobox', textarea: 'textbox', form: 'form', summary: 'button' };
  function role(s) {
    if (s.role) return s.role;
    if (s.tag === 'input') {
      const t = s.type;
      return t === 'checkbox' || t === 'radio' ? t : ['button', 'submit', 'reset', 'image'].includes(t) ? 'button' : 'textbox';
    }
    return ROLES[s.tag] ?? '';
  }

  /**
   * The observation's target (docs/formats.md) from a snapshot. The path is
   * read now: informational (rules never match it), and the costliest part
   * of a description; an element the page removed meanwhile gets the path
   * of what is left of its subtree.
   */
  function describe(s) {
    const text = clip(s.text);
    let path = '';
    try {
      path = cssPath(s.el);
    } catch {
      // never lose the event over its path
    }
    return { tag: s.tag, role: role(s), name: s.name === null ? text : clip(s.name), path, text, selectors: s.selectors };
  }

  /** A CSS string for an attribute value (docs/formats.md, "Target path"). */
  function cssString(v) {
    let plain = v.length <= 80;
    for (let i = 0; i < v.length && plain; i++) {
      const c = v.charCodeAt(i);
      plain = c !== 34 && c !== 92 && c !== 10 && c !== 13 && c !== 12; // " \ \n \r \f
    }
    return plain ? `"${v}"` : `"${v.slice(0, 80).replace(/["\\]/g, '\\$&').replace(/[\n\r\f]/g, ' ')}"`;
  }

  /** Whether an id needs no CSS escaping: [A-Za-z_][A-Za-z0-9_-]*. */
  function plainId(v) {
    if (!v) return false;
    for (let i = 0; i < v.length; i++) {
      const c = v.charCodeAt(i);
      const ok = (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95 || (i > 0 && ((c >= 48 && c <= 57) || c === 45));
      if (!ok) return false;
    }
    return true;
  }

  // What names a step of target.path, best first: `id`, `data-testid` and
  // `name` are anchors (the path starts there), row keys are not.
  const STEP_ATTRS = ['id', 'data-testid', 'name', 'data-id', 'data-key'];
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
      // One call lists the attributes; a value is read only for those
      // that name a step (best first, an empty value does not count).
      const names = n.getAttributeNames();
      let step = '';
      let anchor = false;
      for (let k = 0; k < STEP_ATTRS.length && names.length && !step; k++) {
        const a = STEP_ATTRS[k];
        if (!names.includes(a)) continue;
        const v = n.getAttribute(a);
        if (!v) continue;
        step = k === 0 ? `${tag}#${plainId(v) ? v : CSS.escape(v)}` : `${tag}[${a}=${cssString(v)}]`;
        anchor = k < 3;
      }
      if (!step) {
        const k = childIndex(n, tag);
        step = k ? `${tag}:nth-child(${k})` : tag;
      }
      parts.push(step);
      if (anchor) break;
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

  /**
   * The observation as sent: its target described, its user read. The
   * user is read here, not in the listener: the identity element holds the
   * signed-in user for the page's life, and the worker keeps the session's
   * user for an event that has none (the element already gone).
   */
  function finish(o, who) {
    const t = o.target;
    if (t && t.el) o.target = describe(t.later ? snap(t.el, NONE) : t);
    if (o.user === null) o.user = who ?? user();
    return o;
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

  // Routine observations are queued in the listener and sent together, in
  // `observeBatch` messages of up to BATCH_MAX, FLUSH_DELAY_MS after the
  // first of them (one message, and one pass over cold code, for a burst
  // of events rather than one each), over one long-lived port. A batch stays
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

  let flushTimer = 0;
  function scheduleFlush() {
    if (queue.length >= BATCH_MAX) {
      clearTimeout(flushTimer);
      flushTimer = setTimeout(flush, 0);
      return;
    }
    if (flushPending) return;
    flushPending = true;
    flushTimer = setTimeout(flush, FLUSH_DELAY_MS);
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
    clearTimeout(flushTimer);
    while (queue.length && live) {
      const who = user();
      const list = queue.splice(0, BATCH_MAX);
      for (let i = 0; i < list.length; i++) finish(list[i], who);
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

  /**
   * An observation; its target is a snapshot (snap()) until finish(), or
   * only the element (`later`: plain content, snapshotted at the flush).
   * `sels`: the app selectors the element matches, when already known.
   */
  function obs(kind, e, el, fields, href, sels, later) {
    return {
      kind,
      url: INHERITS ? topUrl(href) : href,
      user: null, // finish()
      target: el ? snap(el, sels) : later ? { el: later, later: true } : null,
      trusted: e ? e.isTrusted === true : true,
      fields,
      action_id: null,
    };
  }

  function record(o) {
    if (app === null || !live) return;
    queue.push(o);
    if (!flushPending || queue.length >= BATCH_MAX) scheduleFlush();
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
    record(obs({ type: 'route_change', from }, null, null, NONE, u));
    return u;
  }

  // --------------------------------------------------------------- holding

  let bypass = null; // {kind, el}: the one replay in flight

  // The guards whose path matches the current URL, by action kind, worked
  // out once per URL (and table): an event tests only its kind's, and none
  // at all when they all need an app selector the target does not match.
  let routeGuards = { app: null, url: '', byKind: null };
  function guardsHere(url) {
    if (routeGuards.url === url && routeGuards.app === app) return routeGuards.byKind;
    let path = '/';
    try {
      path = new URL(url).pathname;
    } catch {
      path = location.pathname;
    }
    const byKind = Object.create(null);
    for (const g of app.guards) {
      if (g.path && !g.path.test(path)) continue;
      for (const k of g.actions) {
        const e = (byKind[k] ??= { list: [], needsSelector: true });
        e.list.push(g);
        if (!g.selector) e.needsSelector = false;
      }
    }
    routeGuards = { app, url, byKind };
    return byKind;
  }

  /** Whether a rule may hold `kind` here whatever selectors the target matches. */
  function unselective(kind, url) {
    const forKind = guardsHere(url)[kind];
    return !!forKind && !forKind.needsSelector;
  }

  function guardFor(kind, el, t, url) {
    if (app === undefined) {
      // The table is not loaded yet (first milliseconds of the page): hold
      // what could be guarded and let the service worker decide.
      return kind === 'submit' || (kind === 'click' && el.closest(INTERACTIVE)) ? { response: 'unknown' } : null;
    }
    if (!app) return null;
    const forKind = guardsHere(url)[kind];
    if (!forKind || (forKind.needsSelector && (!t || t.selectors.length === 0))) return null;
    const list = forKind.list;
    for (let i = 0; i < list.length; i++) {
      const g = list[i];
      // Without a target (print) only rules without target criteria apply,
      // as in the worker.
      if (!t && (g.selector || g.name || g.text)) continue;
      if (g.selector && !t.selectors.includes(g.selector)) continue;
      // The same clipped strings the worker's rules will see.
      if (g.name && !g.name.test(t.name === null ? clip(t.text) : clip(t.name))) continue;
      if (g.text && !g.text.test(clip(t.text))) continue;
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
            if (app) o.target = snap(el);
          })
        : Promise.resolve();
    // Everything queued before this action is recorded first (page order).
    described
      .then(drained)
      .then(() => send({ t: 'guard', obs: finish(o) }))
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

  // Copy, cut, paste and files cannot be replayed faithfully: a synthetic
  // paste inserts nothing, an untrusted event is not the user's, and the
  // page's own paste handling would be skipped. After an approval the user
  // repeats the action instead; the repeat goes through once.
  const AGAIN = { copy: 'copy again', cut: 'cut again', paste: 'paste again', upload: 'add the file again' };
  let grant = null; // {kind, el, until, actionId}: the one approved repeat

  // Where a repeat counts as "the same place": the field, or the editable
  // region the caret is in (a paste lands in whichever child holds it).
  const EDITABLE = 'input, textarea, [contenteditable=""], [contenteditable=true i], [contenteditable=plaintext-only i]';
  function place(el) {
    return (el && el.closest(EDITABLE)) || el || null;
  }

  function allowOnce(replay, actionId) {
    grant = { kind: replay.kind, el: place(replay.el), until: Date.now() + ALLOW_ONCE_MS, actionId: actionId ?? null };
  }

  /** The approved action this event repeats (its action id), used up; else undefined. */
  function granted(kind, el) {
    const g = grant;
    if (!g || g.kind !== kind || Date.now() > g.until) return undefined;
    const p = place(el);
    if (g.el !== p && !(g.el && p && g.el.contains(p))) return undefined;
    grant = null;
    return g.actionId;
  }

  function go(replay, replayable, actionId, title = 'Approved') {
    overlay.hide();
    if (replayable) replay();
    else {
      allowOnce(replay, actionId);
      const back = place(replay.el);
      overlay.show({
        mode: 'notice',
        title: `${title} — ${AGAIN[replay.kind] ?? 'repeat the action'}`,
        body: `It goes through once, in the same place, within ${ALLOW_ONCE_MS / 1000} seconds.`,
        // Back where the user was, ready to repeat (a paste: the caret).
        onClose: () => back && back.isConnected && back.focus({ preventScroll: true }),
      });
    }
  }

  function decide(d, replay, replayable) {
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
            go(replay, replayable, d.actionId);
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
            if (r && r.ok) go(replay, replayable, d.actionId);
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
            if (r && r.ok) go(replay, replayable, d.actionId);
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
        // Nothing to ask (a rule's condition did not hold).
        if (replayable) {
          overlay.hide();
          replay();
        } else go(replay, replayable, null, 'Checked');
    }
  }

  function bypassed(kind, el) {
    return bypass && bypass.kind === kind && (bypass.el === el || (el && bypass.el.contains(el)));
  }


  // ------------------------------------------------------------- listeners

  const CLICK = Object.freeze({ type: 'click' });
  // Tags INTERACTIVE matches whatever their attributes.
  const NATIVE = { button: 1, input: 1, select: 1, textarea: 1, label: 1, summary: 1 };

  function onClick(e) {
    if (!live || app === null || (overlayUp && overlay.owns(e))) return;
    // element(e), written out (see below).
    let raw = e.target;
    if (raw && raw.shadowRoot) raw = e.composedPath()[0] || raw;
    if (raw && raw.nodeType !== 1) raw = raw.parentElement;
    if (!raw || (bypass !== null && bypassed('click', raw))) return;
    const href = urlTracked ? lastUrl : checkUrl();
    if (href !== plainUrl || app !== plainApp) {
      plainUrl = href;
      plainApp = app;
      plainHeld = !!app && unselective('click', href);
    }
    // The common case, a click on plain content (nothing interactive, no
    // app selector: one closest() says so), can be held by no rule that
    // needs a selector, and plain content does not change because it was
    // clicked (a button's label may): only the element is kept, and it is
    // snapshotted at the flush. Written out here, not through obs() and
    // record(): the first events of a page run before V8 has type feedback
    // for this code, and each call and property read then costs.
    let hit = null;
    if (app !== undefined && !plainHeld && (hit = raw.closest(app.interactiveOrAny)) === null) {
      queue.push({ kind: CLICK, url: INHERITS ? topUrl(href) : href, user: null, target: { el: raw, later: true }, trusted: e.isTrusted === true, fields: NONE, action_id: null });
      if (!flushPending || queue.length >= BATCH_MAX) scheduleFlush();
      return;
    }
    clickOn(e, raw, hit, href, false);
  }

  /**
   * A click on an interactive element or one an app selector matches (or
   * any click while a rule may hold one without a selector): snapshotted
   * now, and held when a guard matches. `dry` (warm() only, `e` null):
   * the same path, nothing queued, held or sent.
   */
  function clickOn(e, raw, hit, href, dry) {
    // closest() returns the nearest element matching either list, so when
    // that is a native control it is the interactive ancestor: a second
    // closest() is needed only otherwise.
    const el = hit !== null && NATIVE[hit.localName] === 1 ? hit : raw.closest(INTERACTIVE) || raw;
    const o = obs({ type: 'click' }, e, el, NONE, href);
    const g = guardFor('click', el, o.target, o.url);
    if (dry) return;
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
      if (guardFor('upload', el, o.target, o.url) && !repeats(o, 'upload', el)) {
        // A chosen file cannot be held: clear it, ask, and let the user
        // choose it again if allowed.
        el.value = '';
        holdOnce(e, o, 'upload', el);
        return;
      }
      return record(o);
    }
    const fields = el.type === 'password' || !el.name ? [] : [{ name: el.name, value: String(el.value ?? '').slice(0, 4000), kind: fieldKind(el) }];
    record(obs({ type: 'input' }, e, el, fields, href));
  }

  /**
   * True when this event is the approved repeat of a held action: it goes
   * through, recorded under that action's id (the worker does not ask
   * again for it).
   */
  function repeats(o, kind, el) {
    const id = granted(kind, el);
    if (id === undefined) return false;
    o.action_id = id;
    return true;
  }

  /** Holds an action that cannot be replayed; see allowOnce(). */
  function holdOnce(e, o, kind, el) {
    const replay = () => {};
    replay.kind = kind;
    replay.el = el;
    hold(e, o, replay, false);
  }

  function onClipboard(e) {
    if (!live || app === null || overlay.owns(e)) return;
    const href = here();
    const el = element(e) || document.activeElement || document.body;
    const kind = e.type;
    const o = obs({ type: kind }, e, el, NONE, href);
    if (!guardFor(kind, el, o.target, o.url) || repeats(o, kind, el)) return record(o);
    holdOnce(e, o, kind, el);
  }

  function onDrop(e) {
    if (!live || app === null) return;
    const list = e.dataTransfer && e.dataTransfer.files;
    if (!list || list.length === 0) return;
    const el = element(e);
    const o = obs({ type: 'upload', files: files(list) }, e, el, NONE, here());
    if (!el || !guardFor('upload', el, o.target, o.url) || repeats(o, 'upload', el)) return record(o);
    holdOnce(e, o, 'upload', el);
  }

  // Ctrl/Cmd+P (and Ctrl+Shift+P) reach the page as a keydown before the
  // browser prints, so a print a rule holds is held here and started again
  // with print() once approved. A print the page starts itself
  // (window.print()) or that the browser's menu starts never passes here:
  // `beforeprint` records it, and cannot stop it.
  function onKeydown(e) {
    if (e.keyCode !== 80 || !(e.ctrlKey || e.metaKey) || e.altKey) return;
    if (!live || !app || overlay.owns(e)) return;
    const o = obs({ type: 'print' }, e, null, NONE, here());
    if (!guardFor('print', null, null, o.url)) return; // its beforeprint records it
    const replay = () => {
      bypass = { kind: 'print', el: null };
      try {
        // The browser's command prints the page, not the focused frame.
        let w = window;
        try {
          if (window.top.document) w = window.top;
        } catch {
          // a cross-origin top: print this frame
        }
        w.print();
      } finally {
        bypass = null;
      }
    };
    replay.kind = 'print';
    hold(e, o, replay, true, null);
  }

  function onPrint(e) {
    // beforeprint cannot be cancelled: a print that did not come through
    // onKeydown is recorded, not held. The replay of a held one is already.
    if (!live || app === null || (bypass !== null && bypass.kind === 'print')) return;
    record(obs({ type: 'print' }, e, null, NONE, here()));
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

  // The snapshot and describing code, compiled and given type feedback in
  // an idle slice rather than on the page's first events: V8 compiles a
  // function on its first call and allocates its type feedback only after
  // ~8 calls, and until then every property read is a slow lookup (the
  // first clicks of a page cost 2–5× more; docs/extension.md, "Main-thread
  // cost"). On detached elements this script creates (the page cannot see
  // them; no page text is read): the click path of an interactive element
  // runs `dry`, descriptions are built and dropped; nothing is queued,
  // held or sent.
  function warm() {
    if (!app) return;
    try {
      const els = [document.createElement('div'), document.createElement('input'), document.createElement('button')];
      for (let i = 0; i < 5; i++) {
        for (const el of els) {
          if (el.localName !== 'div') clickOn(null, el, el, lastUrl, true);
          describe(snap(el));
        }
      }
    } catch {
      // best effort
    }
  }

  // The page load itself, once the table says this is an app.
  (function pageLoad() {
    if (app === undefined) {
      setTimeout(pageLoad, 5);
      return;
    }
    if (app) {
      record(obs({ type: 'page_load' }, null, null, NONE, location.href));
      // Sent in the first idle slice: there is nothing to batch a page load
      // with, and the port (connecting costs a few hundred µs) is then open
      // before the first user event, off any event's path.
      requestIdleCallback(
        () => {
          flush();
          warm();
        },
        { timeout: FLUSH_DELAY_MS },
      );
    }
  })();

  chrome.runtime.onMessage.addListener((msg) => {
    if (!msg || msg.t !== 'prompt' || window !== window.top) return;
    // A response fired on an action that could not be held (a session
    // threshold, a download): prompt after the fact.
    if (msg.response === 'block' && msg.kind !== 'download') {
      // The worker cancels a download; anything else that reaches it
      // unheld (a print from the browser menu, a page view) has happened.
      overlay.show({
        mode: 'notice',
        title: 'Not allowed by your organisation',
        body: `${msg.title}. It could not be stopped in time and was recorded.`,
      });
      return;
    }
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
      overlayUp = true;
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
        ok.onclick = () => {
          hide();
          o.onClose?.();
        };
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
      overlayUp = false;
    }
    return { show, hide, owns: (e) => host !== null && e.composedPath().includes(host) };
  })();
})();
