//! Any text: the rule-pack parser returns a pack or errors that each name a
//! line and column inside the text; an accepted pack builds an engine.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sessiontrail_core::rulepack::{Engine, parse};

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else { return };
    match parse("fuzz.toml", src) {
        Ok(pack) => {
            let _ = Engine::new(&[pack]);
        }
        Err(errors) => {
            let lines = src.lines().count().max(1);
            for e in &errors.0 {
                assert!(e.line >= 1 && e.line <= lines + 1, "{e}");
            }
        }
    }
});
