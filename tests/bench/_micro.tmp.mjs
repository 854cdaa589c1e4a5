import { chromium } from 'playwright-core';
const b = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
const p = await b.newPage();
await p.setContent('<table><tbody>' + Array.from({ length: 1430 }, (_, i) => `<tr data-id="${i}"><td>a</td><td>b</td><td>c</td><td>d</td><td>e</td></tr>`).join('') + '</tbody></table>');
const r = await p.evaluate(() => {
  const rows = [...document.querySelectorAll('tr')];
  const time = (f, N = 2000) => { let s = 0; const t = performance.now(); for (let i = 0; i < N; i++) s += f(rows[(i * 389) % rows.length]); return [((performance.now() - t) * 1000 / N).toFixed(2), s]; };
  const FOLLOWING = Node.DOCUMENT_POSITION_FOLLOWING;
  const bs = (n) => { const c = n.parentNode.children; let lo = 0, hi = c.length - 1; while (lo < hi) { const mid = (lo + hi) >> 1; const m = c[mid]; if (m === n) return mid; if (m.compareDocumentPosition(n) & FOLLOWING) lo = mid + 1; else hi = mid - 1; } return lo; };
  const once = (f) => { const t = performance.now(); f(rows[977]); return ((performance.now() - t) * 1000).toFixed(1); };
  return {
    bsCold: once(bs),
    indexOf: time((n) => Array.prototype.indexOf.call(n.parentElement.children, n)),
    bs: time(bs),
    bsOk: rows.every((r, i) => bs(r) === i),
  };
});
console.log(r);
await b.close();
