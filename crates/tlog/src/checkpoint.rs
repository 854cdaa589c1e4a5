//! C2SP checkpoints (<https://c2sp.org/tlog-checkpoint>): the signed tree
//! head, as a signed note whose text is
//!
//! ```text
//! <origin>\n
//! <tree size, ASCII decimal, no leading zeroes>\n
//! <base64 root hash>\n
//! [<extension line>\n ...]
//! ```

use crate::hash::{Hash, hash_from_base64, hash_to_base64};
use crate::note::{NoteError, NoteSigner, VerifierKey};

/// A tree head: the log's identity, a size and the root at that size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's identity, e.g. `sessiontrail.example.com/evidence`.
    pub origin: String,
    /// Number of leaves.
    pub size: u64,
    /// `MTH` of the first `size` leaves.
    pub root: Hash,
    /// Opaque, non-empty extension lines (not recommended by the spec).
    pub extensions: Vec<String>,
}

fn malformed(line: usize, reason: &'static str) -> NoteError {
    NoteError::MalformedCheckpoint { line, reason }
}

impl Checkpoint {
    /// A checkpoint without extension lines.
    pub fn new(origin: &str, size: u64, root: Hash) -> Self {
        Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
            extensions: Vec::new(),
        }
    }

    /// The note text (body), ending in a newline. Refuses an empty origin,
    /// empty extension lines, and newlines or control characters in either.
    pub fn to_text(&self) -> Result<String, NoteError> {
        let bad_line = |s: &str| s.is_empty() || s.bytes().any(|b| b < 0x20);
        if bad_line(&self.origin) {
            return Err(malformed(
                1,
                "origin is empty or contains a control character",
            ));
        }
        let mut text = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            hash_to_base64(&self.root)
        );
        for (i, ext) in self.extensions.iter().enumerate() {
            if bad_line(ext) {
                return Err(malformed(
                    i + 4,
                    "extension line is empty or contains a control character",
                ));
            }
            text.push_str(ext);
            text.push('\n');
        }
        Ok(text)
    }

    /// Parses note text (as returned by [`VerifierKey::open`]) strictly.
    pub fn from_text(text: &str) -> Result<Self, NoteError> {
        let body = text
            .strip_suffix('\n')
            .ok_or(NoteError::MissingFinalNewline)?;
        let mut lines = body.split('\n');
        let origin = lines.next().unwrap_or_default();
        if origin.is_empty() {
            return Err(malformed(1, "origin is empty"));
        }
        let size = lines.next().ok_or(malformed(2, "missing tree size"))?;
        let size =
            parse_size(size).ok_or(malformed(2, "tree size is not a canonical decimal u64"))?;
        let root = lines.next().ok_or(malformed(3, "missing root hash"))?;
        let root = hash_from_base64(root)
            .map_err(|_| malformed(3, "root hash is not canonical base64 of 32 bytes"))?;
        let mut extensions = Vec::new();
        for (i, ext) in lines.enumerate() {
            if ext.is_empty() {
                return Err(malformed(i + 4, "extension line is empty"));
            }
            extensions.push(ext.to_owned());
        }
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
            extensions,
        })
    }

    /// The signed note of this checkpoint. The spec recommends that the
    /// signer's key name equal the origin.
    pub fn sign(&self, signer: &NoteSigner) -> Result<String, NoteError> {
        signer.sign(&self.to_text()?)
    }

    /// Verifies a checkpoint note signed by `key` and issued for `origin`,
    /// and parses it. Signatures by other keys (witnesses) are ignored.
    pub fn verify(note: &str, origin: &str, key: &VerifierKey) -> Result<Self, NoteError> {
        let checkpoint = Checkpoint::from_text(key.open(note)?)?;
        if checkpoint.origin != origin {
            return Err(NoteError::OriginMismatch {
                expected: origin.to_owned(),
                found: checkpoint.origin,
            });
        }
        Ok(checkpoint)
    }
}

/// ASCII decimal without sign, spaces or leading zeroes (except `0` itself).
fn parse_size(text: &str) -> Option<u64> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    canonical.then(|| text.parse().ok()).flatten()
}
