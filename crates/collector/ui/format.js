// Small DOM and formatting helpers. Text always goes in as textContent:
// nothing from the API is ever parsed as HTML.

/** h('td', {class: 'x'}, 'text', childNode, …) */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const pad = (n, w = 2) => String(n).padStart(w, '0');

/** 2026-11-03 14:05:09 (UTC). */
export function utc(ms) {
  const d = new Date(ms);
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
}

export function utcTime(ms) {
  const d = new Date(ms);
  return `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
}

/** A datetime-local value (read as UTC) → ISO 8601 with Z, or ''. */
export function localInputToIso(v) {
  if (!v) return '';
  return v.length === 16 ? `${v}:00Z` : `${v}Z`;
}

export function isoToLocalInput(v) {
  if (!v) return '';
  const ms = /^\d+$/.test(v) ? Number(v) : Date.parse(v);
  if (Number.isNaN(ms)) return '';
  return new Date(ms).toISOString().slice(0, 19);
}

export function severity(s) {
  if (!s) return h('span', { class: 'sev sev-none' }, '—');
  return h('span', { class: `sev sev-${s}` }, s);
}

const DECISIONS = {
  log: 'Logged',
  warn: 'Warned',
  justify: 'Justification',
  step_up: 'Step-up',
  block: 'Blocked',
  terminate: 'Terminated',
};

export function decision(r) {
  return h('span', { class: `decision decision-${r}` }, DECISIONS[r] ?? r);
}

const CHAIN = {
  genesis: ['check-ok', 'chain start'],
  linked: ['check-ok', 'chain linked'],
  after_gap: ['check-warn', 'after a gap'],
  broken: ['check-bad', 'chain BROKEN'],
};

export function chainBadge(state) {
  const [cls, label] = CHAIN[state] ?? ['check-bad', state];
  return h('span', { class: `check ${cls}`, title: `Hash chain: ${state}` }, label);
}

export function signatureBadge(state) {
  if (state === 'verified') return h('span', { class: 'check check-ok', title: 'Signature re-verified from the stored bytes' }, 'signature verified');
  if (state === 'verified_at_ingest') return h('span', { class: 'check check-ok', title: 'Signature verified when the collector received it' }, 'signed');
  return h('span', { class: 'check check-bad' }, `signature ${state.toUpperCase()}`);
}

export function shortKey(k) {
  return `${k.slice(0, 8)}…`;
}
