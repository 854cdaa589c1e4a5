use super::*;
use proptest::prelude::*;

fn key() -> MaskKey {
    let mut k = [0u8; 32];
    for (i, b) in k.iter_mut().enumerate() {
        *b = i as u8;
    }
    MaskKey::from_bytes(k)
}

fn field(name: &str, value: &str, kind: FieldKind) -> ObservedField {
    ObservedField {
        name: name.into(),
        value: value.into(),
        kind,
    }
}

#[test]
fn commitment_vectors() {
    // Computed independently (Python hmac/hashlib); also in docs/masking.md.
    let k = key();
    assert_eq!(k.commit("alice@example.com"), "Ek0rrHqtZ3gJMBJ_sAkWKw");
    assert_eq!(k.commit("4111111111111111"), "0SEAwPeX3Lm8L0Gzj300sg");
    assert_eq!(k.commit(""), "hCi8Qm5QfzyH2BJdp3t0HQ");
    assert_eq!(k.commit("+14155550100"), "N9ZvYdTWzDlIn7c7r4BRfQ");
    assert_eq!(k.commit("hello world"), "8maBRtwiqIwiDXBV_BeyCQ");
}

#[test]
fn commitment_is_deterministic_keyed_and_domain_separated() {
    let k = key();
    let c = k.commit("hello world");
    assert_eq!(c.len(), COMMITMENT_LEN);
    assert_eq!(c, k.commit("hello world"));
    assert_ne!(c, k.commit("hello world!"));
    assert_ne!(c, MaskKey::from_bytes([7; 32]).commit("hello world"));
    // Plain HMAC of the value (no domain prefix) differs.
    assert_ne!(k.commit("alice@example.com"), "pZ_FeNTLRvqrHW6zSOfHSw");
    let plain = k.mac().chain_update(b"hello world").finalize().into_bytes();
    assert_ne!(URL_SAFE_NO_PAD.encode(&plain[..16]), c);
}

#[test]
fn normalisation() {
    assert_eq!(normalise("  hello  "), "hello");
    assert_eq!(normalise("Hello"), "Hello");
    assert_eq!(normalise(" Alice@Example.COM\n"), "alice@example.com");
    assert_eq!(normalise("4111 1111 1111 1111"), "4111111111111111");
    assert_eq!(
        normalise("gb82 west 1234 5698 7654 32"),
        "GB82WEST12345698765432"
    );
    assert_eq!(normalise("(415) 555-0100"), "+14155550100");
    assert_eq!(normalise("123-45-6789"), "123-45-6789");
    // Not exactly one whole value: only trimmed.
    assert_eq!(
        normalise("mail Alice@Example.com"),
        "mail Alice@Example.com"
    );
    assert_eq!(normalise("a@b.com c@d.com"), "a@b.com c@d.com");
    for v in ["  hello ", " Alice@Example.COM", "4111-1111-1111-1111", "x"] {
        assert_eq!(normalise(&normalise(v)), normalise(v));
    }
}

#[test]
fn opens() {
    let k = key();
    let c = k.commit("Alice@Example.com");
    assert!(k.opens("alice@example.com", &c));
    assert!(k.opens(" ALICE@EXAMPLE.COM ", &c));
    assert!(!k.opens("alice@example.org", &c));
    assert!(!MaskKey::from_bytes([1; 32]).opens("alice@example.com", &c));
    let card = k.commit("4111-1111-1111-1111");
    assert!(k.opens("4111111111111111", &card));
    assert!(k.opens("4111 1111 1111 1111", &card));
    // Malformed commitments never open.
    assert!(!k.opens("alice@example.com", ""));
    assert!(!k.opens("alice@example.com", &c[..21]));
    assert!(!k.opens("alice@example.com", &format!("{c}A")));
    assert!(!k.opens("alice@example.com", "!!!!!!!!!!!!!!!!!!!!!!"));
    // Non-canonical last character (same 16 bytes, other trailing bits).
    let mut bad = c.clone();
    let last = bad.pop().unwrap_or('A');
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let idx = alphabet.find(last).unwrap_or(0);
    bad.push(alphabet.as_bytes()[idx | 1] as char);
    if bad != c {
        assert!(!k.opens("alice@example.com", &bad));
    }
}

#[test]
fn opens_inline_tokens() {
    let k = key();
    let masked = mask_text(
        &k,
        "mail Alice@Example.com, card 4111-1111-1111-1111, call (415) 555-0100, \
         iban de89 3704 0044 0532 0130 00, ssn 123-45-6789",
    );
    let tokens: Vec<&str> = masked
        .split(['[', ']'])
        .filter(|s| s.contains(':') && s.len() > COMMITMENT_LEN)
        .collect();
    assert_eq!(tokens.len(), 5, "{masked}");
    let expect = [
        ("email", "alice@example.com"),
        ("card", "4111 1111 1111 1111"),
        ("phone", "+1 415 555 0100"),
        ("iban", "DE89370400440532013000"),
        ("ssn", "123-45-6789"),
    ];
    for (t, (kind, value)) in tokens.iter().zip(expect) {
        let token = format!("[{t}]");
        let (k_kind, commitment) = parse_token(&token).unwrap_or(("", ""));
        assert_eq!(k_kind, kind);
        assert!(k.opens(value, commitment), "{kind} {value}");
        assert!(k.opens(value, &token));
        assert!(!k.opens("something else", &token));
    }
}

#[test]
fn debug_hides_key() {
    let k = MaskKey::from_bytes([0xab; 32]);
    let s = format!("{k:?} {:#?}", k.clone());
    assert!(!s.contains("ab") && !s.contains("171"), "{s}");
}

#[test]
fn mask_text_replaces_and_keeps_the_rest() {
    let k = key();
    let out = mask_text(
        &k,
        "mail alice@example.com now, total 10,000.00 on 2024-01-15",
    );
    assert_eq!(
        out,
        "mail [email:Ek0rrHqtZ3gJMBJ_sAkWKw] now, total 10,000.00 on 2024-01-15"
    );
    assert_eq!(mask_text(&k, ""), "");
    assert_eq!(
        mask_text(&k, "nothing here, v1.2.3 #4411"),
        "nothing here, v1.2.3 #4411"
    );
}

#[test]
fn mask_text_is_idempotent() {
    let k = key();
    for t in [
        "alice@example.com 4111111111111111 DE89370400440532013000 123-45-6789 +14155550100",
        "[email:Ek0rrHqtZ3gJMBJ_sAkWKw]",
        "[card:4111111111111111AAAAAA] x",
        "a@b.co[email:Ek0rrHqtZ3gJMBJ_sAkWKw]c@d.co",
    ] {
        let once = mask_text(&k, t);
        assert_eq!(mask_text(&k, &once), once, "{t}");
        assert!(find_pii(&once).is_empty(), "{once}");
    }
}

#[test]
fn tokens_are_recognised_exactly() {
    let c = "Ek0rrHqtZ3gJMBJ_sAkWKw";
    assert_eq!(token_len(format!("[email:{c}]").as_bytes()), Some(30));
    assert_eq!(token_len(format!("[value:{c}]x").as_bytes()), Some(30));
    assert_eq!(token_len(format!("[mail:{c}]").as_bytes()), None);
    assert_eq!(token_len(format!("[email:{c}").as_bytes()), None);
    assert_eq!(token_len(format!("[email:{c}A]").as_bytes()), None);
    assert_eq!(token_len(format!("[email:{}!]", &c[..21]).as_bytes()), None);
    assert_eq!(parse_token(&format!("[ssn:{c}]")), Some(("ssn", c)));
    assert_eq!(parse_token(&format!("[ssn:{c}] ")), None);
}

#[test]
fn fields() {
    let k = key();
    let fields = [
        field("email", "Alice@Example.com", FieldKind::Email),
        field("comment", "call me at 415-555-0100", FieldKind::Text),
        field("country", "FR", FieldKind::Select),
        field("password", "hunter2", FieldKind::Password),
        field("new", "hunter3", FieldKind::Password),
        field("user_pwd", "hunter4", FieldKind::Text),
        field("loginPassword", "hunter5", FieldKind::Text),
        field("cardCvv", "123", FieldKind::Text),
        field("otp", "123456", FieldKind::Number),
        field("userPIN", "9999", FieldKind::Number),
        field("client_secret", "s3cr3t", FieldKind::Hidden),
        field("role", "admin", FieldKind::Checkbox),
        field("role", "auditor", FieldKind::Checkbox),
        field("role#2", "x", FieldKind::Text),
        field("shipping", "express", FieldKind::Select),
    ];
    let out = mask_fields(&k, &fields, |n| {
        n == "country" || n == "password" || n == "otp"
    });
    let keys: Vec<&str> = out.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "comment", "country", "email", "role", "role#2", "role#2#2", "shipping"
        ]
    );
    assert_eq!(out["country"], FieldValue::Clear("FR".into()));
    assert_eq!(
        out["email"],
        FieldValue::Masked(k.commit("alice@example.com"))
    );
    assert_eq!(out["role"], FieldValue::Masked(k.commit("admin")));
    assert_eq!(out["role#2"], FieldValue::Masked(k.commit("auditor")));
    assert_eq!(out["role#2#2"], FieldValue::Masked(k.commit("x")));
    // A clear field is verbatim: no PII detection.
    let out = mask_fields(&k, &fields[1..2], |_| true);
    assert_eq!(
        out["comment"],
        FieldValue::Clear("call me at 415-555-0100".into())
    );
}

#[test]
fn passwords_never_appear_in_any_form() {
    let k = key();
    let secret = "correct horse battery staple";
    let fields = [
        field("pw", secret, FieldKind::Password),
        field("Password", secret, FieldKind::Text),
        field("x-otp-code", secret, FieldKind::Text),
    ];
    for clear in [true, false] {
        let out = mask_fields(&k, &fields, |_| clear);
        assert!(out.is_empty(), "{out:?}");
        let commitment = k.commit(secret);
        let dump = format!("{out:?}");
        assert!(!dump.contains(secret) && !dump.contains(&commitment));
    }
}

#[test]
fn secret_names() {
    for n in [
        "password",
        "Password",
        "new-password",
        "confirmPassword",
        "passwd",
        "PWD",
        "pass_code",
        "passphrase",
        "client_secret",
        "apiSecret",
        "cvv",
        "card_cvc",
        "cvv2",
        "security_code",
        "pin",
        "PIN",
        "userPin",
        "userPIN",
        "pin_code",
        "PINCode",
        "pin1",
        "otp",
        "mfa-otp",
        "otpCode",
        "totp",
        "login[otp]",
    ] {
        assert!(is_secret_name(n), "{n}");
    }
    for n in [
        "email",
        "shipping",
        "mapping",
        "spinner",
        "opinion",
        "footprint",
        "username",
        "company",
        "",
        "pinkColor",
    ] {
        assert!(!is_secret_name(n), "{n}");
    }
    let w: Vec<&[u8]> = words("userPIN_code2 XMLHttp").collect();
    let want: [&[u8]; 6] = [b"user", b"PIN", b"code", b"2", b"XML", b"Http"];
    assert_eq!(w, want);
    assert!(is_secret_name("mot_de_passe_pin") && is_secret_name("código-PIN"));
    assert!(!is_secret_name("é") && !is_secret_name("ééé_ü"));
}

#[test]
fn urls() {
    let k = key();
    let email = k.commit("alice@example.com");
    let url = "https://bob:hunter2@app.example.com:8443/users/alice@example.com/edit?email=alice%40example.com&tab=profile&flag&x=#section";
    assert_eq!(
        mask_url(&k, url, false, false),
        format!("https://app.example.com:8443/users/[email:{email}]/edit")
    );
    assert_eq!(
        mask_url(&k, url, true, true),
        format!(
            "https://app.example.com:8443/users/[email:{email}]/edit?email=[value:{email}]&tab=[value:{}]&flag&x=#section",
            k.commit("profile")
        )
    );
    // Percent-encoded email in a path.
    assert_eq!(
        mask_url(&k, "https://h/u/Alice%40Example.com", false, false),
        format!("https://h/u/[email:{email}]")
    );
    // Form decoding of query values.
    let out = mask_url(&k, "https://h/?q=hello+world&r=%E2%9C%93", true, false);
    assert_eq!(
        out,
        format!(
            "https://h/?q=[value:{}]&r=[value:{}]",
            k.commit("hello world"),
            k.commit("✓")
        )
    );
    // Fragments: SPA route with a query, token-style pairs, plain anchors.
    assert_eq!(
        mask_url(&k, "https://h/#/u/alice@example.com?id=7", false, true),
        format!("https://h/#/u/[email:{email}]?id=[value:{}]", k.commit("7"))
    );
    assert_eq!(
        mask_url(&k, "https://h/cb#access_token=abc&state=s", false, true),
        format!(
            "https://h/cb#access_token=[value:{}]&state=[value:{}]",
            k.commit("abc"),
            k.commit("s")
        )
    );
    assert_eq!(
        mask_url(&k, "https://h/cb#access_token=abc", false, false),
        "https://h/cb"
    );
    // Non-hierarchical URLs go through mask_text whole.
    assert_eq!(
        mask_url(&k, "mailto:alice@example.com", false, false),
        format!("mailto:[email:{email}]")
    );
    assert_eq!(mask_url(&k, "about:blank", true, true), "about:blank");
    assert_eq!(mask_url(&k, "", true, true), "");
}

#[test]
fn targets() {
    let k = key();
    let t = Target {
        tag: "a".into(),
        role: "link".into(),
        name: "Email alice@example.com".into(),
        path: "main > a[href='mailto:alice@example.com']".into(),
        text: "SSN 123-45-6789".into(),
    };
    let m = mask_target(&k, &t);
    assert_eq!(m.tag, "a");
    assert_eq!(m.role, "link");
    for s in [&m.name, &m.path, &m.text] {
        assert!(
            find_pii(s).is_empty() && s.contains("[email:") || s.contains("[ssn:"),
            "{s}"
        );
        assert!(!s.contains("alice") && !s.contains("6789"), "{s}");
    }
}

#[test]
fn form_decoding() {
    assert_eq!(form_decode("a+b%20c"), "a b c");
    assert_eq!(form_decode("100%"), "100%");
    assert_eq!(form_decode("%zz%4"), "%zz%4");
    assert_eq!(form_decode("%ff"), "\u{fffd}");
    assert_eq!(form_decode("plain"), "plain");
}

/// Text that exercises the detectors: PII-ish fragments glued by arbitrary
/// strings.
fn pii_soup() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("alice@example.com".to_string()),
        Just("Bob.X+1@Sub.Example.org".to_string()),
        Just("%40".to_string()),
        Just("4111 1111 1111 1111".to_string()),
        Just("4111111111111111".to_string()),
        Just("DE89 3704 0044 0532 0130 00".to_string()),
        Just("GB82WEST12345698765432".to_string()),
        Just("123-45-6789".to_string()),
        Just("(415) 555-0100".to_string()),
        Just("+44 (0)20 7946 0958".to_string()),
        Just("[email:Ek0rrHqtZ3gJMBJ_sAkWKw]".to_string()),
        Just("[card:".to_string()),
        "[0-9 .+()@-]{1,12}",
        "[a-zA-Z0-9@.%+_-]{1,12}",
        "\\PC{0,6}",
    ];
    prop::collection::vec(piece, 0..12).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn mask_text_leaves_no_pii_and_is_idempotent(text in pii_soup()) {
        let k = key();
        let once = mask_text(&k, &text);
        prop_assert!(find_pii(&once).is_empty(), "{:?} -> {:?}", text, once);
        prop_assert_eq!(mask_text(&k, &once), once.clone());
    }

    #[test]
    fn arbitrary_utf8_never_panics(text in "\\PC*") {
        let k = key();
        let _ = is_secret_name(&text);
        let fields = [field(&text, &text, FieldKind::Text), field(&text, "", FieldKind::Text)];
        let _ = mask_fields(&k, &fields, |n| n.len() % 2 == 0);
        let out = mask_text(&k, &text);
        prop_assert!(find_pii(&out).is_empty());
        let _ = mask_url(&k, &text, true, true);
        let _ = normalise(&text);
    }

    #[test]
    fn matches_are_ordered_disjoint_and_reopen(text in pii_soup()) {
        let k = key();
        let ms = find_pii(&text);
        let mut last = 0;
        for m in &ms {
            prop_assert!(m.range.start >= last && m.range.end > m.range.start);
            prop_assert!(text.is_char_boundary(m.range.start) && text.is_char_boundary(m.range.end));
            last = m.range.end;
            // Alone, a span is detected as the same kind, and its token opens
            // with the span as written.
            let span = m.as_str(&text);
            prop_assert_eq!(pii::whole_match(span), Some(m.kind), "{:?}", span);
            let token = mask_text(&k, span);
            prop_assert!(k.opens(span, &token), "{:?} {:?}", span, token);
        }
    }
}

/// Digit-heavy text with the separators the detectors care about: shapes
/// that almost match, overlap and abut.
fn dense() -> impl Strategy<Value = String> {
    let c = prop_oneof![
        40 => prop::char::range('0', '9'),
        2 => Just('-'),
        2 => Just(' '),
        1 => Just('.'),
        1 => Just('+'),
        1 => Just('('),
        1 => Just(')'),
        1 => Just('@'),
        1 => Just('a'),
        1 => Just('D'),
        1 => Just('E'),
        1 => Just('%'),
        1 => Just('['),
    ];
    prop::collection::vec(c, 0..48).prop_map(|v| v.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn dense_text_masks_completely(text in dense()) {
        let k = key();
        let once = mask_text(&k, &text);
        prop_assert!(find_pii(&once).is_empty(), "{:?} -> {:?}", text, once);
        prop_assert_eq!(mask_text(&k, &once), once.clone());
        for m in find_pii(&text) {
            let span = m.as_str(&text);
            prop_assert_eq!(pii::whole_match(span), Some(m.kind), "{:?} in {:?}", span, text);
            prop_assert!(k.opens(span, &mask_text(&k, span)));
        }
    }
}
