//! Feeds arbitrary bytes to the whole loader as a compose file (and as its `.env`).
//! Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run load` (see docs/fuzzing.md).
#![no_main]

use composure_compose::loader::{LoadOptions, load_with};
use composure_compose::model::project_from_json;
use composure_compose::source::MemorySource;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Split the input: the first line is the .env file, the rest the compose file.
    let (env, compose) = text.split_once('\n').unwrap_or(("", text));
    let source = MemorySource::new()
        .with("/fuzz/compose.yaml", compose)
        .with("/fuzz/.env", env);
    let mut options = LoadOptions::new("/fuzz");
    options.files = vec!["/fuzz/compose.yaml".into()];
    match load_with(&options, &source) {
        Ok(loaded) => {
            // The canonical JSON is what later components read: it must read back into
            // the same project.
            let json = serde_json::to_value(&loaded.project).expect("the model serializes");
            let again = project_from_json(json.clone())
                .unwrap_or_else(|e| panic!("canonical JSON does not read back: {e}\n{json:#}"));
            assert_eq!(
                again, loaded.project,
                "canonical JSON reads back differently"
            );
        }
        Err(e) => {
            // Every diagnostic of an input problem has a position.
            assert!(
                e.diagnostics
                    .iter()
                    .all(|d| !d.span.is_none() || d.path.segments().is_empty())
            );
        }
    }
});
