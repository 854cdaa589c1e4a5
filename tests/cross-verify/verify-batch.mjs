// An independent verifier for sessiontrail batches, written from
// docs/formats.md alone with Node's built-in crypto (no npm packages).
//
// usage: node verify-batch.mjs BATCH_FILE
// prints one JSON object: what was checked and what failed.
import { readFileSync } from 'node:fs';
import { createHash, createPublicKey, verify } from 'node:crypto';

const SPKI_ED25519_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');
const sha256 = (b) => createHash('sha256').update(b).digest();

function parseBatch(buf) {
  if (buf.length < 44) throw new Error('batch too short');
  if (buf.subarray(0, 4).toString('latin1') !== 'STBA') throw new Error('bad batch magic');
  if (buf[4] !== 1) throw new Error(`unsupported batch version ${buf[4]}`);
  if (buf[5] | buf[6] | buf[7]) throw new Error('reserved bytes set');
  const body = buf.subarray(0, buf.length - 32);
  if (!sha256(body).equals(buf.subarray(buf.length - 32))) throw new Error('batch checksum mismatch');
  const count = body.readUInt32BE(8);
  const records = [];
  let at = 12;
  for (let i = 0; i < count; i++) {
    const len = body.readUInt32BE(at);
    at += 4;
    if (at + len > body.length) throw new Error(`record ${i} truncated`);
    records.push(body.subarray(at, at + len));
    at += len;
  }
  if (at !== body.length) throw new Error('trailing bytes');
  return records;
}

function checkRecord(r) {
  if (r.length < 90 + 64) return { error: 'record too short' };
  if (r.subarray(0, 4).toString('latin1') !== 'STEV') return { error: 'bad record magic' };
  if (r[4] !== 1) return { error: `unsupported record version ${r[4]}` };
  if (r[5] !== 0) return { error: 'reserved byte set' };
  const bodyLen = r.readUInt32BE(86);
  if (90 + bodyLen + 64 !== r.length) return { error: 'body length mismatch' };
  const key = r.subarray(6, 38);
  const seq = r.readBigUInt64BE(38);
  const prev = r.subarray(46, 78);
  const timeMs = r.readBigInt64BE(78);
  const message = r.subarray(0, 90 + bodyLen);
  const signature = r.subarray(90 + bodyLen);
  const publicKey = createPublicKey({
    key: Buffer.concat([SPKI_ED25519_PREFIX, key]),
    format: 'der',
    type: 'spki',
  });
  const signatureOk = verify(null, message, publicKey, signature);
  // Nothing in an unsigned body is worth reading.
  if (!signatureOk) return { seq, signatureOk };
  let body = null;
  try {
    body = JSON.parse(r.subarray(90, 90 + bodyLen).toString('utf8'));
  } catch {
    return { error: 'body is not JSON', seq, signatureOk };
  }
  return { key: key.toString('hex'), seq, prev, timeMs, signatureOk, body, hash: sha256(r) };
}

const records = parseBatch(readFileSync(process.argv[2]));
const failures = [];
const users = new Set();
let verified = 0;
let last = null; // { seq, hash } of the previous good record
for (const [index, raw] of records.entries()) {
  const r = checkRecord(raw);
  if (r.error) {
    failures.push({ index, reason: r.error });
    last = null;
    continue;
  }
  if (!r.signatureOk) {
    failures.push({ index, seq: Number(r.seq), reason: 'signature does not verify' });
    last = null;
    continue;
  }
  const expectedPrev = r.seq === 1n ? Buffer.alloc(32) : last && last.seq + 1n === r.seq ? last.hash : null;
  if (expectedPrev && !expectedPrev.equals(r.prev)) {
    failures.push({ index, seq: Number(r.seq), reason: 'prev_hash does not link' });
  } else if (!expectedPrev) {
    failures.push({ index, seq: Number(r.seq), reason: 'predecessor not verified' });
  }
  verified++;
  users.add(r.body.user);
  last = { seq: r.seq, hash: r.hash };
}
console.log(JSON.stringify({ records: records.length, verified, failures, users: [...users] }));
