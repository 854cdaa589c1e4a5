//! The bundle's container: a ZIP archive in one canonical form, so that
//! every byte of the file is either covered by the signed manifest (file
//! contents) or fixed by this specification (headers), and a verifier can
//! refuse any other byte by rebuilding the container and comparing.
//!
//! Canonical form (`docs/evidence.md`, "The container"): entries in a fixed
//! order, each *stored* (method 0, no compression), no flags, no extra
//! fields or comments, modification time 1980-01-01 00:00:00 (DOS date
//! 0x0021, time 0), version 2.0 (made by MS-DOS), no zip64; local headers
//! back to back from offset 0, then the central directory, then the end
//! record with no comment. Any unzip tool opens it.

/// Parsed entries, in archive order; CRCs are not trusted here (the caller
/// rebuilds the container and compares), so a damaged entry still yields
/// its bytes and the content checks can name what was altered.
pub type Entries = Vec<(String, Vec<u8>)>;

const LOCAL: u32 = 0x0403_4b50;
const CENTRAL: u32 = 0x0201_4b50;
const END: u32 = 0x0605_4b50;
const VERSION: u16 = 20;
const DOS_DATE_1980_01_01: u16 = 0x0021;

fn crc32(b: &[u8]) -> u32 {
    let mut c = flate2::Crc::new();
    c.update(b);
    c.sum()
}

/// Writes the canonical archive of `files` (names ASCII, each below 4 GiB).
pub fn write(files: &[(&str, &[u8])]) -> Vec<u8> {
    let total: usize = files.iter().map(|(n, b)| 76 + 2 * n.len() + b.len()).sum();
    let mut out = Vec::with_capacity(total + 22);
    let mut central = Vec::new();
    for (name, data) in files {
        let offset = out.len() as u32;
        let (crc, size, nlen) = (crc32(data), data.len() as u32, name.len() as u16);
        out.extend_from_slice(&LOCAL.to_le_bytes());
        for v in [VERSION, 0, 0, 0, DOS_DATE_1980_01_01] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for v in [crc, size, size] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&nlen.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);

        central.extend_from_slice(&CENTRAL.to_le_bytes());
        for v in [VERSION, VERSION, 0, 0, 0, DOS_DATE_1980_01_01] {
            central.extend_from_slice(&v.to_le_bytes());
        }
        for v in [crc, size, size] {
            central.extend_from_slice(&v.to_le_bytes());
        }
        for v in [nlen, 0, 0, 0, 0] {
            central.extend_from_slice(&v.to_le_bytes());
        }
        central.extend_from_slice(&0u32.to_le_bytes());
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let cd_offset = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&END.to_le_bytes());
    let n = files.len() as u16;
    for v in [0u16, 0, n, n] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Reads the entries of an archive by walking its local headers from offset
/// 0 (at most `max_entries`). `None` when the bytes are not laid out that
/// way at all.
pub fn read(b: &[u8], max_entries: usize) -> Option<Entries> {
    let mut at = 0usize;
    let mut entries = Vec::new();
    while u32_at(b, at)? == LOCAL {
        if entries.len() == max_entries {
            return None;
        }
        let size = u32_at(b, at + 18)? as usize;
        let nlen = u16_at(b, at + 26)? as usize;
        let xlen = u16_at(b, at + 28)? as usize;
        let name_at = at + 30;
        let data_at = name_at.checked_add(nlen)?.checked_add(xlen)?;
        let name = String::from_utf8(b.get(name_at..name_at + nlen)?.to_vec()).ok()?;
        let data = b.get(data_at..data_at.checked_add(size)?)?.to_vec();
        entries.push((name, data));
        at = data_at + size;
    }
    Some(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    #[test]
    fn canonical_archives_round_trip_and_open_with_a_zip_reader() {
        let files: [(&str, &[u8]); 2] = [("a.txt", b"hello"), ("b.json", b"{}")];
        let z = write(&files);
        let back = read(&z, 8).unwrap();
        assert_eq!(
            back,
            vec![
                ("a.txt".into(), b"hello".to_vec()),
                ("b.json".into(), b"{}".to_vec())
            ]
        );
        let mut zr = zip::ZipArchive::new(std::io::Cursor::new(&z)).unwrap();
        let mut s = String::new();
        zr.by_name("a.txt").unwrap().read_to_string(&mut s).unwrap();
        assert_eq!(s, "hello");
        assert_eq!(write(&files), z, "deterministic");
    }
}
