'use strict';
// Development settings, ignored when managed policy is present. Saved
// through the service worker into IndexedDB (never chrome.storage.local,
// which content scripts can read).

const $ = (id) => document.getElementById(id);
const lines = (s) => s.split(/\s+/).map((x) => x.trim()).filter(Boolean);

async function init() {
  const managed = await chrome.storage.managed.get(null).catch(() => ({}));
  if (managed && Object.keys(managed).length) {
    $('managed').hidden = false;
    for (const el of document.querySelectorAll('input, textarea, button')) el.disabled = true;
  }
}

$('f').addEventListener('submit', async (e) => {
  e.preventDefault();
  let stepUp = null;
  if ($('stepUp').value.trim()) {
    try {
      stepUp = JSON.parse($('stepUp').value);
    } catch {
      $('out').textContent = 'Step-up settings are not valid JSON.';
      return;
    }
  }
  const user = $('user').value.trim();
  const config = {
    collectorUrl: $('collectorUrl').value.trim(),
    enrollmentToken: $('enrollmentToken').value.trim(),
    adminPublicKeys: lines($('adminPublicKeys').value),
    bootstrapRulePacks: lines($('bootstrapRulePacks').value),
    identity: user ? { source: 'policy', user } : { source: 'page' },
    stepUp,
  };
  const r = await chrome.runtime.sendMessage({ t: 'setDevConfig', config });
  $('out').textContent = r && r.ok ? `Saved.${r.warnings.length ? ` ${r.warnings.join(' ')}` : ''}` : `Not saved: ${r ? r.error : 'no answer'}`;
});

init();
