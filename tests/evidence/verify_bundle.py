#!/usr/bin/env python3
"""Independent verifier of sessiontrail evidence bundles, written from
docs/evidence.md, docs/formats.md and docs/tlog.md alone.

    python3 verify_bundle.py BUNDLE.zip [--collector-key KEY]

Prints what it checked and every failure (naming each event as
`event leaf=L device=K seq=S`); exits 1 on any failure, 2 on usage errors.
Needs Python 3 and the `cryptography` package (for Ed25519).
"""
import argparse
import base64
import binascii
import hashlib
import json
import re
import sys
import struct
import zlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

MAX_ENTRY = 512 * 1024 * 1024
ZERO = bytes(32)
HEADER = "sessiontrail evidence bundle v1"
ORDER = ["README.txt", "manifest.json", "manifest.sig", "evidence.json", "report.html"]


# ---------------------------------------------------------------- container (evidence.md)

def write_canonical(entries):
    """The canonical stored ZIP of [(name, bytes)]: docs/evidence.md, "The container"."""
    out, central = bytearray(), bytearray()
    for name, data in entries:
        n = name.encode()
        crc = zlib.crc32(data) & 0xFFFFFFFF
        offset = len(out)
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 0, 0, 0x21, crc, len(data), len(data), len(n), 0)
        out += n + data
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 0, 0, 0x21, crc,
                               len(data), len(data), len(n), 0, 0, 0, 0, 0, offset) + n
    cd = len(out)
    out += central
    out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(central), cd, 0)
    return bytes(out)


def read_entries(b):
    """[(name, data)] from the local headers, CRCs unchecked (the rebuild compares)."""
    at, entries = 0, []
    while at + 30 <= len(b) and struct.unpack_from("<I", b, at)[0] == 0x04034B50:
        if len(entries) == 64:
            return None
        size = struct.unpack_from("<I", b, at + 18)[0]
        nlen, xlen = struct.unpack_from("<HH", b, at + 26)
        start = at + 30 + nlen + xlen
        if start + size > len(b):
            return None
        try:
            name = b[at + 30 : at + 30 + nlen].decode()
        except UnicodeDecodeError:
            return None
        entries.append((name, b[start : start + size]))
        at = start + size
    return entries


def sha256(b):
    return hashlib.sha256(b).digest()


def b64(s):
    """Canonical standard base64 with padding, else ValueError."""
    if not isinstance(s, str) or not re.fullmatch(r"[A-Za-z0-9+/]*={0,2}", s) or len(s) % 4:
        raise ValueError("not canonical base64")
    b = base64.b64decode(s, validate=True)
    if base64.b64encode(b).decode() != s:
        raise ValueError("not canonical base64")
    return b


def u64(s):
    if not isinstance(s, str) or not re.fullmatch(r"0|[1-9][0-9]*", s) or int(s) >= 2**64:
        raise ValueError("not a canonical u64 string")
    return int(s)


def ed25519_ok(pub, msg, sig):
    try:
        Ed25519PublicKey.from_public_bytes(pub).verify(sig, msg)
        return True
    except (InvalidSignature, ValueError):
        return False


# ---------------------------------------------------------------- notes (tlog.md)

class VKey:
    def __init__(self, text):
        parts = text.split("+", 2)
        if len(parts) != 3 or not re.fullmatch(r"[0-9a-f]{8}", parts[1]):
            raise ValueError("expected <name>+<8 hex id>+<base64 key>")
        name, kid, key = parts
        if not name or re.search(r"[\s+]", name):
            raise ValueError("bad key name")
        raw = b64(key)
        if len(raw) != 33 or raw[0] != 1:
            raise ValueError("not an Ed25519 key")
        self.name, self.pub = name, raw[1:]
        self.kid = sha256(name.encode() + b"\n" + raw)[:4]
        if self.kid.hex() != kid:
            raise ValueError("key ID does not match")

    def open(self, note):
        """The verified text of a signed note, else ValueError."""
        if any(ord(c) < 0x20 and c != "\n" for c in note) or not note.endswith("\n"):
            raise ValueError("malformed note")
        split = note.rfind("\n\n")
        if split < 0:
            raise ValueError("no signatures")
        text, sigs = note[: split + 1], note[split + 2 :]
        lines = sigs[:-1].split("\n") if sigs else []
        if not lines or len(lines) > 100:
            raise ValueError("bad number of signatures")
        good = 0
        for line in lines:
            m = re.fullmatch(r"\u2014 (\S+) (\S+)", line)
            if not m or "+" in m.group(1):
                raise ValueError("malformed signature line")
            blob = b64(m.group(2))
            if len(blob) < 5:
                raise ValueError("short signature")
            if m.group(1) != self.name or blob[:4] != self.kid:
                continue
            if len(blob) != 68 or not ed25519_ok(self.pub, text.encode(), blob[4:]):
                raise ValueError("signature does not verify")
            good += 1
        if not good:
            raise ValueError("no signature by this key")
        return text


def checkpoint(note, key):
    lines = key.open(note).split("\n")[:-1]
    if len(lines) < 3 or lines[0] != key.name:
        raise ValueError("wrong origin or layout")
    size = u64(lines[1])
    root = b64(lines[2])
    if len(root) != 32:
        raise ValueError("root is not 32 bytes")
    return size, root


# ---------------------------------------------------------------- Merkle (RFC 9162)

def node(l, r):
    return sha256(b"\x01" + l + r)


def inclusion_ok(leaf_hash, index, size, path, root):
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf_hash
    for p in path:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            r = node(p, r)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


# ---------------------------------------------------------------- records (formats.md)

def parse_record(b):
    if len(b) < 154 or len(b) > 90 + 65536 + 64:
        raise ValueError("bad length")
    if b[0:4] != b"STEV" or b[4] != 1 or b[5] != 0:
        raise ValueError("bad magic, version or reserved byte")
    n = int.from_bytes(b[86:90], "big")
    if n > 65536 or 90 + n + 64 != len(b):
        raise ValueError("body length mismatch")
    seq = int.from_bytes(b[38:46], "big")
    prev = b[46:78]
    if seq == 0 or (seq == 1 and prev != ZERO):
        raise ValueError("bad seq or genesis prev_hash")
    return {"key": b[6:38], "seq": seq, "prev": prev, "body": b[90 : 90 + n],
            "sig_ok": ed25519_ok(b[6:38], b[: 90 + n], b[90 + n :])}


def name_of(leaf, raw):
    s = f"event leaf={leaf}"
    if raw is not None and len(raw) >= 38:
        s += f" device={raw[6:38].hex()[:16]}"
    if raw is not None and len(raw) >= 46:
        s += f" seq={int.from_bytes(raw[38:46], 'big')}"
    return s


# ---------------------------------------------------------------- the bundle

def verify(path, trusted):
    ok, fails, notes = [], [], []
    with open(path, "rb") as f:
        blob = f.read()
    entries = read_entries(blob)
    if entries is None:
        fails.append("bundle: not a ZIP archive in the canonical form")
        return ok, fails, notes
    if write_canonical(entries) != blob:
        fails.append("bundle: the ZIP container differs from its canonical form")
    if [n for n, _ in entries] != ORDER:
        fails.append(f"bundle: entries are {[n for n, _ in entries]}, expected {ORDER}")
    files = {}
    for name, data in entries:
        if name in files or len(data) > MAX_ENTRY:
            fails.append(f"bundle: {name} repeated or too large")
            return ok, fails, notes
        files[name] = data

    try:
        ev = json.loads(files["evidence.json"])
        assert ev["format"] == "sessiontrail-evidence" and ev["version"] == 1
    except Exception as e:  # noqa: BLE001 - any parse problem is fatal here
        fails.append(f"evidence.json: missing or unreadable ({e!r})")
        return ok, fails, notes

    coll = ev["collector"]
    key_text = (trusted or coll["verifier_key"]).strip()
    if trusted and trusted.strip() != coll["verifier_key"]:
        fails.append("collector key: the bundle names another verifier key")
    if not trusted:
        notes.append("no --collector-key: trusting the key inside the bundle (self-consistency only)")
    try:
        key = VKey(key_text)
    except ValueError as e:
        fails.append(f"collector key: {e}")
        return ok, fails, notes
    if coll["origin"] != key.name:
        fails.append("collector key: origin differs from the key name")

    # Manifest.
    man = files.get("manifest.json")
    sig = files.get("manifest.sig")
    if man is None or sig is None:
        fails.append("bundle: manifest.json or manifest.sig is missing")
    else:
        expected = f"{HEADER}\n{key.name}\n{sha256(man).hex()}\n"
        try:
            if key.open(sig.decode()) == expected:
                ok.append("manifest.sig verifies over manifest.json")
            else:
                fails.append("manifest.sig: signs another digest")
        except (ValueError, UnicodeDecodeError) as e:
            fails.append(f"manifest.sig: {e}")
        try:
            m = json.loads(man)
            listed = {f["name"]: f["sha256"] for f in m["files"]}
            for name, digest in listed.items():
                if name not in files:
                    fails.append(f"{name}: listed but missing")
                elif sha256(files[name]).hex() != digest:
                    fails.append(f"{name}: SHA-256 differs from the manifest")
                else:
                    ok.append(f"{name}: SHA-256 matches")
            for name in files:
                if name not in listed and name not in ("manifest.json", "manifest.sig"):
                    fails.append(f"{name}: not listed in the manifest")
            if "evidence.json" not in listed:
                fails.append("manifest.json: does not list evidence.json")
        except (ValueError, KeyError, TypeError) as e:
            fails.append(f"manifest.json: {e!r}")

    # Checkpoint.
    try:
        size, root = checkpoint(ev["checkpoint"], key)
        ok.append(f"checkpoint verifies: size {size}")
    except (ValueError, KeyError) as e:
        fails.append(f"checkpoint: {e}")
        size, root = None, None

    def included(entry, raw):
        if root is None:
            return "inclusion not proven: the checkpoint does not verify"
        try:
            leaf = u64(entry["leaf_index"])
            path = [b64(h) for h in entry["inclusion_path"]]
        except (ValueError, KeyError, TypeError):
            return "malformed leaf_index or inclusion path"
        if any(len(p) != 32 for p in path):
            return "malformed hash in inclusion path"
        if not inclusion_ok(sha256(b"\x00" + raw), leaf, size, path, root):
            return "inclusion proof fails against the checkpoint"
        return None

    # Devices.
    rk = coll["record_key"]
    enrolled = {}
    for d in ev["devices"]:
        k = d["device_key"]
        if not re.fullmatch(r"[0-9a-f]{64}", k):
            fails.append(f"device {k!r}: not a 64 hex key")
            continue
        err = None
        if d["kind"] == "collector":
            err = None if k == rk else "claims to be the collector but is not its key"
        elif not d.get("enrollment"):
            err = "has no enrollment record"
        else:
            err = admin_problem(d["enrollment"], "device.enroll", k, rk, included)
        if d.get("revocation"):
            e2 = admin_problem(d["revocation"], "device.revoke", k, rk, included)
            if e2:
                fails.append(f"device {k[:16]}: revocation record: {e2}")
        if err:
            fails.append(f"device {k[:16]}: {err}")
        else:
            ok.append(f"device {k[:16]}: enrolled")
        enrolled[k] = err is None

    # Events.
    chains, leaves, good = {}, set(), 0
    for e in ev["events"]:
        leaf = e.get("leaf_index")
        try:
            raw = b64(e["record"])
        except (ValueError, KeyError):
            fails.append(f"{name_of(leaf, None)}: record is not base64")
            continue
        name = name_of(leaf, raw)
        if leaf in leaves:
            fails.append(f"{name}: leaf index appears twice")
        leaves.add(leaf)
        try:
            r = parse_record(raw)
        except ValueError as x:
            fails.append(f"{name}: malformed record ({x})")
            continue
        bad = False
        if not r["sig_ok"]:
            fails.append(f"{name}: signature does not verify")
            bad = True
        if not enrolled.get(r["key"].hex(), False):
            fails.append(f"{name}: its key is not enrolled in this bundle")
            bad = True
        problem = included(e, raw)
        if problem:
            fails.append(f"{name}: {problem}")
            bad = True
        chain = chains.setdefault(r["key"].hex(), {})
        h = sha256(raw)
        if r["seq"] in chain and chain[r["seq"]][0] != h:
            fails.append(f"{name}: another record for the same seq is in the bundle")
            bad = True
        chain.setdefault(r["seq"], (h, r["prev"], name))
        good += not bad
    ok.append(f"{good} of {len(ev['events'])} events verified")

    gaps = {}
    for g in ev.get("gaps", []):
        gaps.setdefault(g["device_key"], []).append((int(g["first_seq"]), int(g["last_seq"])))
    for k, chain in chains.items():
        seqs = sorted(chain)
        for s in seqs:
            h, prev, name = chain[s]
            if s > 1 and s - 1 in chain and chain[s - 1][0] != prev:
                fails.append(f"{name}: does not link to seq {s - 1}")
        for a, b in zip(seqs, seqs[1:]):
            if b > a + 1:
                known = any(x <= b - 1 and y >= a + 1 for x, y in gaps.get(k, []))
                notes.append(f"device {k[:16]}: seq {a + 1}-{b - 1} not in bundle"
                             + (" (gap record: never received)" if known else ""))
    return ok, fails, notes


def admin_problem(entry, action, device_hex, record_key, included):
    try:
        raw = b64(entry["record"])
        r = parse_record(raw)
    except (ValueError, KeyError) as e:
        return f"record malformed ({e})"
    if r["key"].hex() != record_key:
        return "not signed by the collector's record key"
    if not r["sig_ok"]:
        return "signature does not verify"
    try:
        kind = json.loads(r["body"])["kind"]
    except (ValueError, KeyError, TypeError):
        return "body does not parse"
    if kind.get("type") != "admin_action" or kind.get("action") != action or kind.get("subject") != device_hex:
        return f"not a {action} record for this key"
    return included(entry, raw)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle")
    ap.add_argument("--collector-key")
    a = ap.parse_args()
    try:
        ok, fails, notes = verify(a.bundle, a.collector_key)
    except OSError as e:
        print(f"cannot read {a.bundle}: {e}", file=sys.stderr)
        return 2
    for line in ok:
        print(f"ok    {line}")
    for line in notes:
        print(f"note  {line}")
    for line in fails:
        print(f"FAIL  {line}")
    print("RESULT: OK" if not fails else f"RESULT: FAILED ({len(fails)} problems)")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
