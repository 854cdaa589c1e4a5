//! Development helper: compiles and signs a rule pack, for tests and local
//! runs of the extension before the collector serves packs
//! (`sessiontrail rulepack sign` is the admin's tool).
//!
//! `cargo run -p sessiontrail-wasm --example sign_pack -- PACK.toml ADMIN_SEED_HEX OUT [VERSION]`
//!
//! Prints the admin public key (hex) on stdout. `VERSION` overrides the
//! pack's version (tests use it to make newer and older packs).

use sessiontrail_core::rulepack::{AdminKey, compile, parse};

fn run() -> Result<String, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [pack, seed, out, rest @ ..] = args.as_slice() else {
        return Err("usage: sign_pack PACK.toml ADMIN_SEED_HEX OUT [VERSION]".into());
    };
    let src = std::fs::read_to_string(pack).map_err(|e| format!("{pack}: {e}"))?;
    let mut p = parse(pack, &src).map_err(|e| e.to_string())?;
    if let Some(v) = rest.first() {
        p.pack.version = v.parse().map_err(|_| format!("bad version {v:?}"))?;
    }
    let mut s = [0u8; 32];
    hex::decode_to_slice(seed.trim(), &mut s).map_err(|_| "seed must be 64 hex digits")?;
    let blob = compile(&p, &s).map_err(|e| e.to_string())?;
    std::fs::write(out, &blob).map_err(|e| format!("{out}: {e}"))?;
    Ok(AdminKey::from_seed(&s).to_hex())
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(k) => {
            println!("{k}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sign_pack: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
