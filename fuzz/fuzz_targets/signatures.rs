//! `cargo fuzz run signatures`: see fuzz/harness/mod.rs.

#![no_main]

#[path = "../harness/mod.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    harness::signatures(data);
});
