//! Feeds arbitrary bytes to the whole loader as a compose file (and as its `.env`).
//! Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run load` (see docs/fuzzing.md).
#![no_main]

use composure_compose::loader::{LoadOptions, load_with};
use composure_compose::source::MemorySource;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // Split the input: the first line is the .env file, the rest the compose file.
    let (env, compose) = text.split_once('\n').unwrap_or(("", text));
    let source = MemorySource::new()
        .with("/fuzz/compose.yaml", compose)
        .with("/fuzz/.env", env);
    let mut options = LoadOptions::new("/fuzz");
    options.files = vec!["/fuzz/compose.yaml".into()];
    if let Err(e) = load_with(&options, &source) {
        // Every diagnostic of an input problem has a position.
        assert!(e.diagnostics.iter().all(|d| !d.span.is_none() || d.path.segments().is_empty()));
    }
});
