//! The simulator meets the runtime contract that Docker meets.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use composure_runtime::contract::{self, CHECKS};
use composure_runtime::sim::SimRuntime;

#[tokio::test]
async fn the_simulator_meets_the_runtime_contract() {
    let sim = SimRuntime::new();
    sim.set_image_missing(contract::MISSING_IMAGE);
    contract::run_all(&sim, &sim, "t-contract").await.unwrap();
    // Every check cleaned up after itself.
    assert!(sim.containers().is_empty(), "{:?}", sim.containers());
    assert!(sim.networks().is_empty(), "{:?}", sim.networks());
    assert!(sim.volumes().is_empty(), "{:?}", sim.volumes());
}

#[tokio::test]
async fn the_contract_fails_a_runtime_that_breaks_it() {
    // The simulator with an image missing that the contract needs fails the checks that
    // use it, and says which: the checks can fail.
    let sim = SimRuntime::new();
    sim.set_image_missing(contract::MISSING_IMAGE);
    sim.set_image_missing(contract::IMAGE);
    let error = contract::run_all(&sim, &sim, "t-broken").await.unwrap_err();
    let failed: Vec<&str> = error
        .failures
        .iter()
        .map(|(name, _)| name.as_str())
        .collect();
    assert!(failed.contains(&"lifecycle"), "{error}");
    assert!(failed.contains(&"images"), "{error}");
    assert!(!failed.contains(&"ping"), "{error}");
    assert!(
        error
            .to_string()
            .contains("runtime contract check(s) failed")
    );
}

#[tokio::test]
async fn an_unknown_check_is_an_error() {
    let sim = SimRuntime::new();
    let error = contract::run_check(&sim, &sim, "t-unknown", "no_such_check")
        .await
        .unwrap_err();
    assert_eq!(error, "no contract check is named `no_such_check`");
    assert!(CHECKS.contains(&"lifecycle"));
}
