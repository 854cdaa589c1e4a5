//! Any bytes: the record decoder either refuses them with a reason or yields
//! a record whose accessors, body parser and signature check do not panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sessiontrail_core::SignedEvent;

fuzz_target!(|data: &[u8]| {
    if let Ok(ev) = SignedEvent::from_bytes(data.to_vec()) {
        let _ = (ev.seq(), ev.time_ms(), ev.prev_hash(), ev.device_key(), ev.hash());
        let _ = ev.body();
        let _ = ev.signature_valid();
        assert_eq!(ev.as_bytes(), data, "records are kept verbatim");
    }
});
