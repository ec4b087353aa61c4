//! Property tests: no input makes the loader panic, and every error it reports about a file's
//! content carries a position in that file.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test helpers panic on setup failures by design

use composure_compose::loader::{LoadOptions, load_with};
use composure_compose::source::MemorySource;
use proptest::prelude::*;

fn load_text(text: &str) -> Result<(), composure_compose::LoadError> {
    let source = MemorySource::new().with("/p/compose.yaml", text);
    let mut options = LoadOptions::new("/p");
    options.files = vec!["/p/compose.yaml".into()];
    load_with(&options, &source).map(|_| ())
}

fn assert_positioned(text: &str) {
    if let Err(e) = load_text(text) {
        for d in e.errors() {
            assert!(
                !d.span.is_none(),
                "error without a position for input {text:?}: {d}"
            );
            assert_eq!(&*d.span.file, "/p/compose.yaml", "{d}");
        }
    }
}

/// Fragments of compose files, so that generated input reaches deep into the loader rather
/// than stopping at the YAML parser.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("services:\n".to_string()),
        Just("  web:\n".to_string()),
        Just("    image: nginx\n".to_string()),
        Just("    ports: [\"8080:80\", \"x\"]\n".to_string()),
        Just("    ports:\n      - 80\n".to_string()),
        Just("    depends_on: [db, web]\n".to_string()),
        Just("    depends_on:\n      db: {condition: service_healthy}\n".to_string()),
        Just("    environment: {A: ${X:-1}, B: $$Y}\n".to_string()),
        Just("    environment: [A=1, B]\n".to_string()),
        Just("    volumes: [\"data:/data\", \"./x:/x:ro\", \"nope:/n\"]\n".to_string()),
        Just("    networks: [front]\n".to_string()),
        Just(
            "    deploy: {replicas: 2, resources: {limits: {memory: 512m, cpus: '0.5'}}}\n"
                .to_string()
        ),
        Just("    healthcheck: {test: curl x, interval: 10s, retries: three}\n".to_string()),
        Just("    extends: db\n".to_string()),
        Just("    build: .\n".to_string()),
        Just("    command: !reset\n".to_string()),
        Just("    <<: *a\n".to_string()),
        Just("  db: &a\n    image: postgres\n".to_string()),
        Just("networks:\n  front: {}\n".to_string()),
        Just("volumes:\n  data:\n".to_string()),
        Just("x-foo: &x {a: 1}\n".to_string()),
        Just("${UNCLOSED\n".to_string()),
        "[ -~]{0,30}\n",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        assert_positioned(&text);
    }

    #[test]
    fn compose_like_text_never_panics(parts in prop::collection::vec(fragment(), 0..14)) {
        assert_positioned(&parts.concat());
    }
}
