//! Signed notes and checkpoints: the Go `sumdb/note` known answers (an
//! independent implementation of the same format), a pinned checkpoint, round
//! trips and tampered-note rejections.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use proptest::prelude::*;
use sessiontrail_tlog::note::key_id;
use sessiontrail_tlog::{Checkpoint, NoteError, NoteSigner, VerifierKey, leaf_hash, root_of};

// golang.org/x/mod/sumdb/note's test key and signed message.
const PETER_SKEY: &str = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const ENOCH_VKEY: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
const GO_TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                       then you don't know what your problem is.\n";
const PETER_SIG: &str = "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
const ENOCH_SIG: &str = "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

fn peter() -> NoteSigner {
    let skey = STANDARD.decode(PETER_SKEY).unwrap();
    assert_eq!(skey[0], 0x01);
    NoteSigner::new("PeterNeumann", skey[1..].try_into().unwrap()).unwrap()
}

#[test]
fn go_sumdb_note_known_answer() {
    let signer = peter();
    let vkey = signer.verifier_key();
    assert_eq!(vkey.to_string(), PETER_VKEY);
    assert_eq!(vkey.key_id(), 0xc74f20a3);
    assert_eq!(key_id("PeterNeumann", &vkey.public_key()), 0xc74f20a3);
    assert_eq!(VerifierKey::parse(PETER_VKEY).unwrap(), vkey);
    assert_eq!(PETER_VKEY.parse::<VerifierKey>().unwrap(), vkey);

    let note = format!("{GO_TEXT}\n{PETER_SIG}");
    assert_eq!(signer.sign(GO_TEXT).unwrap(), note);
    assert_eq!(vkey.open(&note), Ok(GO_TEXT));
}

#[test]
fn other_signatures_are_ignored_but_one_known_is_required() {
    let peter = VerifierKey::parse(PETER_VKEY).unwrap();
    let enoch = VerifierKey::parse(ENOCH_VKEY).unwrap();
    let both = format!("{GO_TEXT}\n{ENOCH_SIG}{PETER_SIG}");
    assert_eq!(peter.open(&both), Ok(GO_TEXT));
    assert_eq!(enoch.open(&both), Ok(GO_TEXT));

    let enoch_only = format!("{GO_TEXT}\n{ENOCH_SIG}");
    assert_eq!(peter.open(&enoch_only), Err(NoteError::UnknownKeysOnly));
    // Same name, another key ID: still someone else's key.
    let other_id = PETER_SIG.replace("x08go", "AAAAA");
    assert_eq!(
        peter.open(&format!("{GO_TEXT}\n{other_id}")),
        Err(NoteError::UnknownKeysOnly)
    );
    // The known key's line with a broken signature sinks the whole note.
    let broken = PETER_SIG.replace("x08go/ZJ", "x08go/ZK");
    assert_eq!(
        peter.open(&format!("{GO_TEXT}\n{ENOCH_SIG}{broken}")),
        Err(NoteError::BadSignature)
    );
}

const SEED: [u8; 32] = [7; 32];
const ORIGIN: &str = "sessiontrail.example/evidence";

fn ct_root() -> [u8; 32] {
    let inputs: [&[u8]; 8] = [
        b"",
        &[0x00],
        &[0x10],
        &[0x20, 0x21],
        &[0x30, 0x31],
        &[0x40, 0x41, 0x42, 0x43],
        &[0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57],
        &[
            0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d,
            0x6e, 0x6f,
        ],
    ];
    root_of(&inputs.map(leaf_hash))
}

/// The pinned checkpoint of docs/tlog.md: the 8-leaf RFC 6962 reference
/// tree, signed with the seed `07` x 32 (cross-checked with Python's
/// `cryptography` Ed25519 and `hashlib` when pinned).
const PINNED_VKEY: &str =
    "sessiontrail.example/evidence+eba4d0f0+AepKbGPinFIKvvVQexMuxfmVR3auvr57kkIe6mkURtIs";
const PINNED_NOTE: &str = "sessiontrail.example/evidence
8
XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=

— sessiontrail.example/evidence 66TQ8A5PYtKeQtpe1wEYw/SmLTN8/+4XoNvaQBqXMYVLBQ7Qpi9ZLkg+XoNOc0BbkyQ+WQlT8njyBmjE/bnQLd+5Lg4=
";

#[test]
fn pinned_checkpoint() {
    let signer = NoteSigner::new(ORIGIN, &SEED).unwrap();
    let cp = Checkpoint::new(ORIGIN, 8, ct_root());
    let note = cp.sign(&signer).unwrap();
    assert_eq!(signer.verifier_key().to_string(), PINNED_VKEY);
    assert_eq!(note, PINNED_NOTE);
    let vkey = VerifierKey::parse(PINNED_VKEY).unwrap();
    assert_eq!(Checkpoint::verify(PINNED_NOTE, ORIGIN, &vkey), Ok(cp));
}

fn pinned() -> (VerifierKey, Checkpoint) {
    let vkey = VerifierKey::parse(PINNED_VKEY).unwrap();
    let cp = Checkpoint::verify(PINNED_NOTE, ORIGIN, &vkey).unwrap();
    (vkey, cp)
}

fn malformed(line: usize) -> impl Fn(&NoteError) -> bool {
    move |e| matches!(e, NoteError::MalformedCheckpoint { line: l, .. } if *l == line)
}

#[test]
fn tampered_notes_are_rejected() {
    let (vkey, _) = pinned();
    let open = |note: &str| Checkpoint::verify(note, ORIGIN, &vkey);
    let swap = |from: &str, to: &str| {
        assert!(PINNED_NOTE.contains(from), "{from}");
        open(&PINNED_NOTE.replacen(from, to, 1))
    };
    // Signed content changed.
    assert_eq!(swap("\n8\n", "\n9\n"), Err(NoteError::BadSignature));
    assert_eq!(swap("XcnaeacG", "XcnaeacH"), Err(NoteError::BadSignature));
    assert_eq!(
        swap("evidence\n8", "evidence2\n8"),
        Err(NoteError::BadSignature)
    );
    assert_eq!(swap("66TQ8A5P", "66TQ8A5Q"), Err(NoteError::BadSignature));
    // Layout.
    assert_eq!(
        open(PINNED_NOTE.trim_end_matches('\n')),
        Err(NoteError::MissingFinalNewline)
    );
    assert_eq!(swap("=\n\n", "=\n"), Err(NoteError::NoSignatures));
    assert_eq!(
        open(&format!("{PINNED_NOTE}\n")),
        Err(NoteError::NoSignatures)
    );
    assert_eq!(swap("\n8\n", "\r\n8\n"), Err(NoteError::ControlCharacter));
    assert!(matches!(
        swap("— ", "- "),
        Err(NoteError::MalformedSignature { line: 1, .. })
    ));
    assert!(matches!(
        swap("— ", "—  "),
        Err(NoteError::MalformedSignature { line: 1, .. })
    ));
    assert!(matches!(
        swap("Lg4=", "Lg4"),
        Err(NoteError::MalformedSignature { line: 1, .. })
    ));
    assert!(matches!(
        swap("Lg4=", "Lg5="),
        Err(NoteError::MalformedSignature { line: 1, .. })
    ));
    assert!(matches!(
        swap("66TQ8A5P", "66TQ 8A5P"),
        Err(NoteError::MalformedSignature { line: 1, .. })
    ));
    let other = NoteSigner::new(ORIGIN, &[9; 32]).unwrap();
    let cp = Checkpoint::new(ORIGIN, 8, ct_root());
    assert_eq!(
        open(&cp.sign(&other).unwrap()),
        Err(NoteError::UnknownKeysOnly)
    );
    // Too many signature lines.
    let mut many = PINNED_NOTE.to_owned();
    let line = PINNED_NOTE.split("\n\n").nth(1).unwrap();
    for _ in 0..100 {
        many.push_str(&line.replace("evidence ", "witness "));
    }
    assert_eq!(
        open(&many),
        Err(NoteError::TooManySignatures { limit: 100 })
    );
    // A correctly signed checkpoint for another log.
    assert_eq!(
        Checkpoint::verify(PINNED_NOTE, "sessiontrail.example/other", &vkey),
        Err(NoteError::OriginMismatch {
            expected: "sessiontrail.example/other".into(),
            found: ORIGIN.into(),
        })
    );
}

#[test]
fn checkpoint_bodies_are_parsed_strictly() {
    let root = "XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=";
    let ok = |t: &str| Checkpoint::from_text(t).unwrap();
    let err = |t: &str| Checkpoint::from_text(t).unwrap_err();
    let cp = ok(&format!("o\n8\n{root}\n"));
    assert_eq!((cp.origin.as_str(), cp.size, cp.root), ("o", 8, ct_root()));
    assert_eq!(ok(&format!("o\n0\n{root}\n")).size, 0);
    assert_eq!(
        ok(&format!("o\n18446744073709551615\n{root}\n")).size,
        u64::MAX
    );
    let ext = ok(&format!("o\n8\n{root}\nx y\nz\n"));
    assert_eq!(ext.extensions, ["x y", "z"]);
    assert_eq!(ext.to_text().unwrap(), format!("o\n8\n{root}\nx y\nz\n"));

    for size in [
        "08",
        "00",
        "+8",
        "-8",
        " 8",
        "8 ",
        "",
        "0x8",
        "18446744073709551616",
        "８",
    ] {
        assert!(
            malformed(2)(&err(&format!("o\n{size}\n{root}\n"))),
            "{size:?}"
        );
    }
    let no_pad = root.trim_end_matches('=');
    let trailing_bits = root.replace("yg=", "yh=");
    let url_safe = root.replace('+', "-").replace('/', "_");
    let short = &root[4..];
    for bad in [
        no_pad,
        &trailing_bits,
        &url_safe,
        short,
        "",
        &format!("{root} "),
    ] {
        assert!(malformed(3)(&err(&format!("o\n8\n{bad}\n"))), "{bad:?}");
    }
    assert!(malformed(1)(&err(&format!("\n8\n{root}\n"))));
    assert!(malformed(3)(&err("o\n8\n")));
    assert!(malformed(2)(&err("o\n")));
    assert!(malformed(4)(&err(&format!("o\n8\n{root}\n\n"))));
    assert!(malformed(5)(&err(&format!("o\n8\n{root}\nx\n\n"))));
    assert_eq!(
        err(&format!("o\n8\n{root}")),
        NoteError::MissingFinalNewline
    );

    // Encoding refuses what parsing would refuse.
    let mut cp = Checkpoint::new("", 1, [0; 32]);
    assert!(malformed(1)(&cp.to_text().unwrap_err()));
    cp.origin = "a\nb".into();
    assert!(malformed(1)(&cp.to_text().unwrap_err()));
    cp.origin = "o".into();
    cp.extensions = vec!["".into()];
    assert!(malformed(4)(&cp.to_text().unwrap_err()));
}

#[test]
fn verifier_keys_are_parsed_strictly() {
    let bad = |k: &str| VerifierKey::parse(k).unwrap_err();
    assert_eq!(
        bad(&PINNED_VKEY.replace("+eba4d0f0+", "+eba4d0f1+")),
        NoteError::KeyIdMismatch
    );
    assert!(matches!(
        bad(&PINNED_VKEY.replace("+eba4d0f0+", "+EBA4D0F0+")),
        NoteError::InvalidVerifierKey(_)
    ));
    assert!(matches!(
        bad(&PINNED_VKEY.replace("+eba4d0f0+", "+eba4d0f+")),
        NoteError::InvalidVerifierKey(_)
    ));
    assert!(matches!(
        bad(&PINNED_VKEY.replace("+AepK", "+AupK")),
        NoteError::InvalidVerifierKey(_)
    ));
    assert!(matches!(
        bad(&PINNED_VKEY.replace("+AepK", "+AepKAA")),
        NoteError::InvalidVerifierKey(_)
    ));
    assert!(matches!(
        bad(PINNED_VKEY.rsplit_once('+').unwrap().0),
        NoteError::InvalidVerifierKey(_)
    ));
    assert_eq!(
        bad(&PINNED_VKEY.replace("example/", "example/ ")),
        NoteError::InvalidKeyName
    );
    assert_eq!(
        bad(&PINNED_VKEY[PINNED_VKEY.find('+').unwrap()..]),
        NoteError::InvalidKeyName
    );
    assert_eq!(
        NoteSigner::new("a+b", &SEED).unwrap_err(),
        NoteError::InvalidKeyName
    );
    assert_eq!(
        NoteSigner::new("", &SEED).unwrap_err(),
        NoteError::InvalidKeyName
    );
    // Signing refuses text the note format cannot carry.
    let signer = NoteSigner::new(ORIGIN, &SEED).unwrap();
    assert_eq!(
        signer.sign("no newline"),
        Err(NoteError::MissingFinalNewline)
    );
    assert_eq!(signer.sign("tab\t\n"), Err(NoteError::ControlCharacter));
    // The signer's Debug output does not leak the key.
    assert!(!format!("{signer:?}").contains("07"));
}

proptest! {
    #[test]
    fn checkpoints_round_trip(
        origin in "[a-z0-9./-]{1,40}",
        size: u64,
        root: [u8; 32],
        extensions in proptest::collection::vec("[ -~]{1,20}", 0..3),
        seed: [u8; 32],
    ) {
        let signer = NoteSigner::new(&origin, &seed).unwrap();
        let vkey = VerifierKey::parse(&signer.verifier_key().to_string()).unwrap();
        let cp = Checkpoint { origin: origin.clone(), size, root, extensions };
        let note = cp.sign(&signer).unwrap();
        prop_assert_eq!(Checkpoint::verify(&note, &origin, &vkey), Ok(cp));
    }
}
