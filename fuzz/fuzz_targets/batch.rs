//! Any bytes: the batch decoder refuses them with a reason or frames records;
//! verification and chain checking of whatever it framed do not panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sessiontrail_core::batch::{decode, verify_signatures};
use sessiontrail_core::chain::{Item, Nothing, check};
use std::collections::BTreeSet;

fuzz_target!(|data: &[u8]| {
    let Ok(framed) = decode(data) else { return };
    let records: Vec<_> = framed.iter().filter_map(|f| f.record.clone().ok()).collect();
    let Some(first) = records.first() else { return };
    let device = first.device_key();
    let keys: BTreeSet<_> = [device].into();
    let status = verify_signatures(&records, &keys);
    let items: Vec<Item<'_>> = records
        .iter()
        .zip(&status)
        .map(|(r, s)| Item {
            raw: r.as_bytes(),
            record: Some(r),
            signature_ok: *s == sessiontrail_core::batch::SigStatus::Valid,
            hash: None,
        })
        .collect();
    let _ = check(&device, &Nothing, &items, None);
});
