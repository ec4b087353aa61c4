//! Feeds arbitrary bytes to the API's decoding of `PUT /v1/projects/{name}`: the first line
//! is the project name from the URL, the rest the request body.
//! Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run api_project` (see docs/fuzzing.md).
#![no_main]

use std::path::{Component, Path};

use composure_compose::names::path_within;
use composure_daemon::decode::put_project;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let Ok(name) = std::str::from_utf8(&data[..split]) else {
        return;
    };
    let body = data.get(split + 1..).unwrap_or_default();
    let Ok(decoded) = put_project(name, body) else {
        return;
    };
    // Whatever is accepted names only paths inside the daemon's directories.
    let root = Path::new("/data/vip");
    let mut names: Vec<&str> = vec![name];
    names.extend(decoded.project.services.keys().map(String::as_str));
    names.extend(
        decoded
            .project
            .services
            .values()
            .filter_map(|s| s.container_name.as_deref()),
    );
    for part in names {
        let path = path_within(root, &[part]).expect("an accepted name is a plain component");
        assert!(path.starts_with(root));
        assert!(
            path.components()
                .all(|c| matches!(c, Component::RootDir | Component::Normal(_))),
            "{path:?}"
        );
    }
});
