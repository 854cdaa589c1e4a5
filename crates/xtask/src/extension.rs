//! Building, staging and packing the browser extension.
//!
//! - [`build_extension`]: wasm-pack builds `crates/wasm` into
//!   `extension/pkg` (profile `wasm-release`), the module's `name` and
//!   `producers` sections are stripped, and a clean directory is staged at
//!   `target/extension/`: the root `manifest.json` plus `extension/` minus
//!   dev-only files. Never the whole repository.
//! - [`package`] (`cargo xtask package [--codebase URL]`): a signed CRX
//!   (`chromium --pack-extension`) and an update manifest in `target/dist/`,
//!   for `ExtensionSettings` force-install with an `update_url`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::{Result, root, step};

/// The wasm-pack output the service worker imports.
pub const WASM: &str = "extension/pkg/sessiontrail_wasm_bg.wasm";
/// Files under `extension/` that never ship.
const DEV_ONLY: &[&str] = &[
    "dev-signing-key.pem",
    "pkg/package.json",
    "pkg/.gitignore",
    "pkg/README.md",
];
/// Extensions of files that never ship.
const DEV_ONLY_EXT: &[&str] = &["d.ts", "map", "md", "pem"];

fn leb128(b: &[u8], at: &mut usize) -> Option<usize> {
    let mut v: usize = 0;
    let mut shift = 0;
    loop {
        let x = *b.get(*at)?;
        *at += 1;
        v |= usize::from(x & 0x7f).checked_shl(shift)?;
        if x & 0x80 == 0 {
            return Some(v);
        }
        shift += 7;
    }
}

/// Removes the `name` and `producers` custom sections (debug names are a
/// third of the module and nothing at run time reads them).
pub fn strip_custom_sections(wasm: &[u8]) -> Option<Vec<u8>> {
    if wasm.get(0..4)? != b"\0asm" {
        return None;
    }
    let mut out = wasm.get(0..8)?.to_vec();
    let mut at = 8;
    while at < wasm.len() {
        let start = at;
        let id = *wasm.get(at)?;
        at += 1;
        let len = leb128(wasm, &mut at)?;
        let body_start = at;
        let end = body_start.checked_add(len)?;
        let mut keep = true;
        if id == 0 {
            let mut p = body_start;
            let nlen = leb128(wasm, &mut p)?;
            let name = wasm.get(p..p.checked_add(nlen)?)?;
            keep = name != b"name" && name != b"producers";
        }
        if keep {
            out.extend_from_slice(wasm.get(start..end)?);
        }
        at = end;
    }
    Some(out)
}

fn gz_len(path: &Path) -> Option<usize> {
    let o = Command::new("gzip")
        .args(["-9", "-c"])
        .arg(path)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    o.status.success().then_some(o.stdout.len())
}

fn copy_tree(from: &Path, to: &Path, rel: &Path) -> Result {
    let dir = from.join(rel);
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(std::result::Result::ok)
        .collect();
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for e in entries {
        let r = rel.join(e.file_name());
        let name = r.to_string_lossy().replace('\\', "/");
        let file_name = e.file_name().to_string_lossy().into_owned();
        if DEV_ONLY.contains(&name.as_str())
            || DEV_ONLY_EXT
                .iter()
                .any(|x| file_name.ends_with(&format!(".{x}")))
            || file_name.starts_with('.')
        {
            continue;
        }
        let ty = e.file_type().map_err(|e| e.to_string())?;
        if ty.is_dir() {
            std::fs::create_dir_all(to.join(&r)).map_err(|e| e.to_string())?;
            copy_tree(from, to, &r)?;
        } else if ty.is_file() {
            std::fs::copy(from.join(&r), to.join(&r))
                .map_err(|e| format!("copying {name}: {e}"))?;
        }
    }
    Ok(())
}

/// Builds the wasm module and stages the extension in `target/extension/`.
/// Returns the staged directory.
pub fn build_extension() -> Result<PathBuf> {
    crate::install::wasm_tools()?;
    let root = root();
    let mut path = std::env::var_os("PATH").unwrap_or_default();
    if let Some(bin) = crate::install::cargo_bin("wasm-bindgen").parent()
        && !bin.as_os_str().is_empty()
    {
        let mut p = std::env::split_paths(&path).collect::<Vec<_>>();
        p.insert(0, bin.to_path_buf());
        path = std::env::join_paths(p).map_err(|e| e.to_string())?;
    }
    step(
        "wasm-pack build crates/wasm (profile wasm-release)",
        Command::new(crate::install::cargo_bin("wasm-pack"))
            .current_dir(&root)
            .env("PATH", &path)
            .args([
                "build",
                "crates/wasm",
                "--target",
                "web",
                "--profile",
                "wasm-release",
                "--no-pack",
                "--out-dir",
                "../../extension/pkg",
            ]),
    )?;
    let wasm_path = root.join(WASM);
    let wasm = std::fs::read(&wasm_path).map_err(|e| format!("{}: {e}", wasm_path.display()))?;
    let stripped = strip_custom_sections(&wasm).ok_or("the wasm module is malformed")?;
    std::fs::write(&wasm_path, &stripped).map_err(|e| e.to_string())?;

    let staged = root.join("target/extension");
    if staged.exists() {
        std::fs::remove_dir_all(&staged).map_err(|e| format!("{}: {e}", staged.display()))?;
    }
    std::fs::create_dir_all(staged.join("extension")).map_err(|e| e.to_string())?;
    std::fs::copy(root.join("manifest.json"), staged.join("manifest.json"))
        .map_err(|e| format!("manifest.json: {e}"))?;
    copy_tree(
        &root.join("extension"),
        &staged.join("extension"),
        Path::new(""),
    )?;
    let gz = gz_len(&wasm_path).map_or_else(|| "?".to_owned(), |n| n.to_string());
    println!(
        "    extension staged in {} (wasm {} bytes, {gz} gzipped)",
        staged.display(),
        stripped.len()
    );
    Ok(staged)
}

fn manifest_version(dir: &Path) -> Result<String> {
    let text = std::fs::read_to_string(dir.join("manifest.json")).map_err(|e| e.to_string())?;
    let at = text
        .find("\"version\"")
        .ok_or("manifest.json has no version")?;
    let rest = &text[at + 9..];
    let open = rest.find('"').ok_or("bad manifest version")?;
    let close = rest[open + 1..].find('"').ok_or("bad manifest version")?;
    Ok(rest[open + 1..open + 1 + close].to_owned())
}

/// The extension id of a PEM private key: the first 16 bytes of SHA-256
/// of the DER public key, as letters a–p.
fn extension_id(key: &Path) -> Result<String> {
    let der = Command::new("openssl")
        .args(["pkey", "-pubout", "-outform", "DER", "-in"])
        .arg(key)
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("openssl: {e}"))?;
    if !der.status.success() {
        return Err(format!("openssl could not read {}", key.display()));
    }
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("sha256sum: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write as _;
        stdin.write_all(&der.stdout).map_err(|e| e.to_string())?;
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let hex = String::from_utf8_lossy(&out.stdout);
    let id: String = hex
        .chars()
        .take(32)
        .filter_map(|c| c.to_digit(16))
        .filter_map(|d| char::from_u32('a' as u32 + d))
        .collect();
    if id.len() == 32 {
        Ok(id)
    } else {
        Err("could not compute the extension id".into())
    }
}

/// `cargo xtask package [--codebase URL]`.
pub fn package(args: &[String]) -> Result {
    let codebase = args
        .iter()
        .position(|a| a == "--codebase")
        .and_then(|i| args.get(i + 1))
        .cloned()
        .or_else(|| std::env::var("SESSIONTRAIL_UPDATE_BASE").ok())
        .unwrap_or_else(|| "http://127.0.0.1:7878/extension".into());
    let staged = build_extension()?;
    let root = root();
    let key = match std::env::var_os("SESSIONTRAIL_EXTENSION_KEY") {
        Some(k) => PathBuf::from(k),
        None => {
            println!(
                "    signing with the THROWAWAY DEVELOPMENT key extension/dev-signing-key.pem; \
                 set SESSIONTRAIL_EXTENSION_KEY to your own key for a real deployment"
            );
            root.join("extension/dev-signing-key.pem")
        }
    };
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let crx = staged.with_extension("crx");
    let _ = std::fs::remove_file(&crx);
    let profile = root.join("target/pack-profile");
    step(
        "chromium --pack-extension",
        Command::new(&chromium)
            .arg("--headless")
            .arg("--no-sandbox")
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(format!("--pack-extension={}", staged.display()))
            .arg(format!("--pack-extension-key={}", key.display())),
    )?;
    let _ = std::fs::remove_dir_all(&profile);
    if !crx.exists() {
        return Err(format!("chromium did not write {}", crx.display()));
    }
    let version = manifest_version(&staged)?;
    let id = extension_id(&key)?;
    let dist = root.join("target/dist");
    std::fs::create_dir_all(&dist).map_err(|e| e.to_string())?;
    let crx_name = format!("sessiontrail-{version}.crx");
    std::fs::rename(&crx, dist.join(&crx_name)).map_err(|e| e.to_string())?;
    let xml = format!(
        "<?xml version='1.0' encoding='UTF-8'?>\n\
         <gupdate xmlns='http://www.google.com/update2/response' protocol='2.0'>\n  \
         <app appid='{id}'>\n    \
         <updatecheck codebase='{}/{crx_name}' version='{version}' />\n  \
         </app>\n\
         </gupdate>\n",
        codebase.trim_end_matches('/')
    );
    std::fs::write(dist.join("updates.xml"), xml).map_err(|e| e.to_string())?;
    println!(
        "    packed {} (id {id}) and {}",
        dist.join(&crx_name).display(),
        dist.join("updates.xml").display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_only_name_and_producers() {
        let mut m = b"\0asm\x01\0\0\0".to_vec();
        // custom "name" section
        m.extend_from_slice(&[0, 6, 4, b'n', b'a', b'm', b'e', 9]);
        // type section (id 1), 1 byte body
        m.extend_from_slice(&[1, 1, 0]);
        // custom "keep" section
        m.extend_from_slice(&[0, 5, 4, b'k', b'e', b'e', b'p']);
        let s = strip_custom_sections(&m);
        let mut want = b"\0asm\x01\0\0\0".to_vec();
        want.extend_from_slice(&[1, 1, 0, 0, 5, 4, b'k', b'e', b'e', b'p']);
        assert_eq!(s, Some(want));
        assert_eq!(strip_custom_sections(b"nope"), None);
        assert_eq!(strip_custom_sections(b"\0asm\x01\0\0\0\x01\x09"), None);
    }
}
