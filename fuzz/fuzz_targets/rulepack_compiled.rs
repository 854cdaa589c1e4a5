//! Any bytes: the compiled-pack verifier refuses them with a reason. Only a
//! blob signed by the pinned key can pass, so with a random key pinned
//! nothing may pass at all.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sessiontrail_core::rulepack::{AdminKey, verify};

fuzz_target!(|data: &[u8]| {
    let pinned = [AdminKey::from_seed(&[7; 32])];
    assert!(verify(data, &pinned, None).is_err());
});
