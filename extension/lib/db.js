// Durable state of the service worker, in the extension origin's IndexedDB
// (content scripts run in the page's origin and cannot open it).
//
// Database "sessiontrail", version 1:
//   kv     — small records by key: device seed, mask key, chain tip,
//            enrollment, packs in force, sessions, tabs, pending actions,
//            gap counter, upload state, dev config. See docs/extension.md.
//   queue  — signed records waiting for the collector's ack, keyed by the
//            record's seq as a 20-digit zero-padded decimal string (so keys
//            sort numerically and a u64 never becomes a JS number).
//   dead   — batches the collector refused as malformed (400): kept, never
//            retried, surfaced in the popup and status; never silently lost.
//
// Every event is committed with its chain tip (and the session state it
// changed) in ONE readwrite transaction: either the record and the new tip
// are both durable, or neither is.

const DB_NAME = 'sessiontrail';
const DB_VERSION = 1;

let dbPromise = null;

function req(r) {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}

function done(tx) {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error ?? new Error('transaction aborted'));
  });
}

export function open() {
  if (dbPromise) return dbPromise;
  dbPromise = new Promise((resolve, reject) => {
    const r = indexedDB.open(DB_NAME, DB_VERSION);
    r.onupgradeneeded = () => {
      const db = r.result;
      if (!db.objectStoreNames.contains('kv')) db.createObjectStore('kv');
      if (!db.objectStoreNames.contains('queue')) db.createObjectStore('queue');
      if (!db.objectStoreNames.contains('dead')) db.createObjectStore('dead', { autoIncrement: true });
    };
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
  dbPromise.catch(() => { dbPromise = null; });
  return dbPromise;
}

export const seqKey = (seq) => String(seq).padStart(20, '0');

export async function get(key) {
  const db = await open();
  return req(db.transaction('kv').objectStore('kv').get(key));
}

export async function getMany(keys) {
  const db = await open();
  const store = db.transaction('kv').objectStore('kv');
  const values = await Promise.all(keys.map((k) => req(store.get(k))));
  return Object.fromEntries(keys.map((k, i) => [k, values[i]]));
}

/** Writes several kv entries atomically (`undefined` deletes). */
export async function put(entries) {
  const db = await open();
  const tx = db.transaction('kv', 'readwrite');
  const kv = tx.objectStore('kv');
  for (const [k, v] of Object.entries(entries)) {
    if (v === undefined) kv.delete(k);
    else kv.put(v, k);
  }
  return done(tx);
}

/**
 * Appends signed records to the queue and writes kv entries (the new chain
 * tip, sessions, …) in one transaction.
 * records: [{seq: string, record: Uint8Array, t: number}]
 */
export async function commit(records, entries = {}) {
  const db = await open();
  const tx = db.transaction(['queue', 'kv'], 'readwrite');
  const q = tx.objectStore('queue');
  for (const r of records) q.put({ seq: r.seq, record: r.record, t: r.t }, seqKey(r.seq));
  const kv = tx.objectStore('kv');
  for (const [k, v] of Object.entries(entries)) {
    if (v === undefined) kv.delete(k);
    else kv.put(v, k);
  }
  return done(tx);
}

export async function queueCount() {
  const db = await open();
  return req(db.transaction('queue').objectStore('queue').count());
}

/** The oldest `limit` queued records, in seq order. */
export async function queueHead(limit) {
  const db = await open();
  return req(db.transaction('queue').objectStore('queue').getAll(null, limit));
}

/** Deletes queued records by seq (after the collector's ack). */
export async function queueDelete(seqs, entries = {}) {
  const db = await open();
  const tx = db.transaction(['queue', 'kv'], 'readwrite');
  const q = tx.objectStore('queue');
  for (const s of seqs) q.delete(seqKey(s));
  const kv = tx.objectStore('kv');
  for (const [k, v] of Object.entries(entries)) {
    if (v === undefined) kv.delete(k);
    else kv.put(v, k);
  }
  return done(tx);
}

/** Moves records out of the queue into the dead-letter store. */
export async function queueToDead(items, reason) {
  const db = await open();
  const tx = db.transaction(['queue', 'dead'], 'readwrite');
  const q = tx.objectStore('queue');
  const d = tx.objectStore('dead');
  for (const it of items) {
    q.delete(seqKey(it.seq));
    d.add({ ...it, reason, movedMs: Date.now() });
  }
  return done(tx);
}

export async function deadCount() {
  const db = await open();
  return req(db.transaction('dead').objectStore('dead').count());
}
