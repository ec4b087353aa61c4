//! The key-value contract (`composure_store::kv::contract`) on both backends: SQLite on a
//! file, and a real 3-member etcd cluster; then what only one of them has to show: SQLite's
//! history surviving a reopen, etcd's prefix isolation, its behaviour with members down,
//! and a clear failure to connect.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod etcd;

use std::time::Duration;

use composure_store::kv::{
    Compare, EtcdConfig, EtcdKv, Kv, KvError, Op, SqliteKv, Txn, TxnOutcome, WatchEvent, WatchKind,
    contract,
};
use etcd::EtcdCluster;
use futures_util::StreamExt;
use tokio::time::{Instant, timeout};

async fn commit(kv: &dyn Kv, txn: Txn) -> u64 {
    match kv.txn(txn).await.unwrap() {
        TxnOutcome::Committed(revision) => revision,
        TxnOutcome::Conflict => panic!("unexpected conflict"),
    }
}

async fn put(kv: &dyn Kv, key: &str, value: &str) -> u64 {
    commit(kv, Txn::new().then(Op::put(key, value.as_bytes().to_vec()))).await
}

fn event(revision: u64, key: &str, value: Option<&str>) -> WatchEvent {
    WatchEvent {
        revision,
        key: key.to_string(),
        kind: value.map_or(WatchKind::Delete, |v| WatchKind::Put(v.as_bytes().to_vec())),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let kv = SqliteKv::open(&dir.path().join("state.db")).unwrap();
    contract::run_all(&kv).await.unwrap();
}

/// Everything committed, the revision and the history for watches are in the file: a
/// reopened store (after the process that wrote it is gone) has them all.
#[tokio::test(flavor = "multi_thread")]
async fn sqlite_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let kv = SqliteKv::open(&path).unwrap();
    let start = kv.range("", 0).await.unwrap().revision;
    let r1 = put(&kv, "a", "1").await;
    let r2 = commit(
        &kv,
        Txn::new()
            .then(Op::put("b", b"2".to_vec()))
            .then(Op::put("c", b"3".to_vec())),
    )
    .await;
    let r3 = commit(&kv, Txn::new().then(Op::delete("a"))).await;
    let lease = kv.grant_lease(Duration::from_secs(600)).await.unwrap();
    let r4 = commit(
        &kv,
        Txn::new().then(Op::Put {
            key: "leased".into(),
            value: b"4".to_vec(),
            lease,
        }),
    )
    .await;
    let before = kv.range("", 0).await.unwrap();
    assert_eq!(before.revision, r4);
    // Dropped without any shutdown, as a killed daemon leaves it (every commit was synced).
    drop(kv);

    let kv = SqliteKv::open(&path).unwrap();
    let after = kv.range("", 0).await.unwrap();
    assert_eq!(after, before, "the reopened store differs");
    let (revision, b) = kv.get("b").await.unwrap();
    assert_eq!(revision, r4);
    let b = b.unwrap();
    assert_eq!(
        (b.create_revision, b.mod_revision, b.value.as_slice()),
        (r2, r2, &b"2"[..])
    );
    // The history replays from before the reopen.
    let mut watch = kv.watch("", start).await.unwrap();
    let mut events = Vec::new();
    for _ in 0..5 {
        events.push(
            timeout(Duration::from_secs(10), watch.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap(),
        );
    }
    assert_eq!(
        events,
        [
            event(r1, "a", Some("1")),
            event(r2, "b", Some("2")),
            event(r2, "c", Some("3")),
            event(r3, "a", None),
            event(r4, "leased", Some("4")),
        ]
    );
    // The revision goes on from where it was, and the live part of the watch works.
    let r5 = put(&kv, "d", "5").await;
    assert_eq!(r5, r4 + 1);
    let next = timeout(Duration::from_secs(10), watch.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(next, event(r5, "d", Some("5")));
    // The lease survived too, and still holds its key.
    kv.keep_alive(lease).await.unwrap();
    kv.revoke_lease(lease).await.unwrap();
    assert!(kv.get("leased").await.unwrap().1.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn etcd_keeps_the_contract() {
    let cluster = EtcdCluster::start(3).await;
    let kv = cluster.connect("/composure-test/").await;
    assert_eq!(
        kv.describe(),
        format!(
            "etcd {} (prefix /composure-test/)",
            cluster.endpoints().join(",")
        )
    );
    let started = Instant::now();
    contract::run_all(&kv).await.unwrap();
    eprintln!("the contract on etcd took {:?}", started.elapsed());
}

/// Two prefixes on one etcd are two stores: neither sees, watches nor deletes the other's
/// keys; `range("")` is every key under the prefix.
#[tokio::test(flavor = "multi_thread")]
async fn etcd_prefixes_are_separate_stores() {
    let cluster = EtcdCluster::start(3).await;
    let a = cluster.connect("/cluster-a/").await;
    let b = cluster.connect("/cluster-a-other/").await;
    let start = a.range("", 0).await.unwrap().revision;
    let mut watch_a = a.watch("", start).await.unwrap();
    put(&b, "k", "from b").await;
    let ra = put(&a, "k", "from a").await;
    let ra2 = put(&a, "x/y", "2").await;
    let keys: Vec<_> = a
        .range("", 0)
        .await
        .unwrap()
        .kvs
        .into_iter()
        .map(|kv| (kv.key, kv.value))
        .collect();
    assert_eq!(
        keys,
        [
            ("k".to_string(), b"from a".to_vec()),
            ("x/y".to_string(), b"2".to_vec())
        ]
    );
    let first = timeout(Duration::from_secs(10), watch_a.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        first,
        event(ra, "k", Some("from a")),
        "b's put leaked into a's watch"
    );
    let second = timeout(Duration::from_secs(10), watch_a.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(second, event(ra2, "x/y", Some("2")));
    commit(&a, Txn::new().then(Op::delete_prefix(""))).await;
    assert!(a.range("", 0).await.unwrap().kvs.is_empty());
    let (_, kv) = b.get("k").await.unwrap();
    assert_eq!(
        kv.unwrap().value,
        b"from b",
        "a's delete of everything reached b"
    );
}

/// One member down of three: everything works. Two down: no quorum, and calls fail with
/// `Unavailable` within about the request timeout instead of hanging; a watch ends with
/// `Unavailable`. The members back: the store works again, its data intact.
#[tokio::test(flavor = "multi_thread")]
async fn etcd_without_quorum_is_unavailable_then_recovers() {
    let mut cluster = EtcdCluster::start(3).await;
    let kv = cluster.connect("/faults/").await;
    let request_timeout = cluster.config("/faults/").request_timeout;
    let before = put(&kv, "before", "1").await;

    // One member down (the leader, to make it harder): a new leader is elected, and the
    // client goes to the members that answer.
    let first = cluster.leader().await.unwrap_or(0);
    cluster.stop(first);
    let started = Instant::now();
    let mut unavailable = 0;
    for i in 0..20 {
        let key = format!("one-down/{i}");
        let txn = Txn::new()
            .when(Compare::unchanged(key.as_str(), 0))
            .then(Op::put(key.as_str(), b"x".to_vec()));
        match kv.txn(txn).await {
            Ok(TxnOutcome::Committed(_)) => {}
            // A transaction that was in flight when its member went, or sent during the
            // election, may come back Unavailable: re-read and retry, as the domain layer
            // does.
            Ok(TxnOutcome::Conflict) => {}
            Err(KvError::Unavailable(why)) => {
                unavailable += 1;
                eprintln!("one member down, txn {i}: {why}");
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "still unavailable {:?} after one member of three went: {why}",
                    started.elapsed()
                );
            }
            Err(err) => panic!("txn with one member down: {err}"),
        }
    }
    eprintln!(
        "one member down: 20 transactions in {:?}, {unavailable} unavailable",
        started.elapsed()
    );
    // Once the cluster settled, every call succeeds, reads and writes.
    let settled = Instant::now();
    loop {
        if kv.get("before").await.is_ok() && kv.range("one-down/", 0).await.is_ok() {
            break;
        }
        assert!(settled.elapsed() < Duration::from_secs(15), "no new leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for i in 0..20 {
        let (_, got) = kv.get("before").await.unwrap();
        assert_eq!(got.unwrap().mod_revision, before);
        put(&kv, &format!("one-down-settled/{i}"), "y").await;
    }
    let written = kv.range("one-down-settled/", 0).await.unwrap().kvs.len();
    assert_eq!(written, 20);

    // A watch, to see it end when quorum goes.
    let now = kv.range("", 0).await.unwrap().revision;
    let mut watch = kv.watch("", now).await.unwrap();

    // Two down: no quorum.
    let second = (first + 1) % 3;
    cluster.stop(second);
    let slack = Duration::from_millis(1500);
    let started = Instant::now();
    let result = kv
        .txn(Txn::new().then(Op::put("lost", b"x".to_vec())))
        .await;
    let took = started.elapsed();
    eprintln!("txn without quorum: {result:?} after {took:?}");
    assert!(
        matches!(result, Err(KvError::Unavailable(_))),
        "txn without quorum returned {result:?}"
    );
    assert!(
        took <= request_timeout + slack,
        "txn without quorum took {took:?} (request timeout {request_timeout:?})"
    );
    let started = Instant::now();
    let result = kv.get("before").await;
    let took = started.elapsed();
    eprintln!("get without quorum: {result:?} after {took:?}");
    assert!(
        matches!(result, Err(KvError::Unavailable(_))),
        "get without quorum returned {result:?}"
    );
    assert!(
        took <= request_timeout + slack,
        "get without quorum took {took:?} (request timeout {request_timeout:?})"
    );
    // The watch is either on a stopped member (its stream broke) or on the one left, which
    // ends it once it knows it has no leader.
    let end = timeout(Duration::from_secs(30), async {
        loop {
            match watch.next().await {
                Some(Ok(_)) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("a watch went on without quorum for 30 s");
    eprintln!("watch without quorum ended with {end:?}");
    assert!(
        matches!(end, Some(Err(KvError::Unavailable(_)))),
        "the watch ended with {end:?}, expected Unavailable"
    );
    assert!(
        timeout(Duration::from_secs(5), watch.next())
            .await
            .unwrap()
            .is_none(),
        "the watch went on after its error"
    );

    // Back: the store works again, with everything committed before.
    cluster.restart(first);
    cluster.restart(second);
    let restarted = Instant::now();
    for member in 0..3 {
        cluster.wait_member(member).await;
    }
    eprintln!(
        "the cluster answered again {:?} after the restarts",
        restarted.elapsed()
    );
    let (_, got) = kv.get("before").await.unwrap();
    assert_eq!(got.unwrap().mod_revision, before);
    assert_eq!(
        kv.range("one-down-settled/", 0).await.unwrap().kvs.len(),
        20
    );
    let after = put(&kv, "after", "2").await;
    assert!(after > before);
    // A watch from before the outage replays it all.
    let mut watch = kv.watch("", before - 1).await.unwrap();
    let first_event = timeout(Duration::from_secs(10), watch.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first_event, event(before, "before", Some("1")));
}

/// The member a client talks to stops (not the leader: no election): reads and
/// transactions go to the other members, without an error, a transaction included since
/// its connection was refused (it cannot have been applied).
#[tokio::test(flavor = "multi_thread")]
async fn etcd_fails_over_from_a_stopped_member() {
    let mut cluster = EtcdCluster::start(3).await;
    let leader = cluster.leader().await.expect("the cluster has a leader");
    let follower = (leader + 1) % 3;
    // The follower first: it is the member the client talks to.
    let mut config = cluster.config("/failover/");
    config.endpoints = std::iter::once(follower)
        .chain((0..3).filter(|m| *m != follower))
        .map(|m| cluster.endpoint(m))
        .collect();
    let kv = EtcdKv::connect(config).await.unwrap();
    let before = put(&kv, "before", "1").await;
    cluster.stop(follower);
    // Let the client see its connection closed.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    for i in 0..10 {
        let key = format!("k{i}");
        let txn = Txn::new()
            .when(Compare::unchanged(key.as_str(), 0))
            .then(Op::put(key.as_str(), b"x".to_vec()));
        match kv.txn(txn).await {
            Ok(TxnOutcome::Committed(_)) => {}
            other => panic!("txn {i} with a follower down returned {other:?}"),
        }
        let (_, got) = kv.get("before").await.unwrap();
        assert_eq!(got.unwrap().mod_revision, before);
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "10 transactions and reads took {took:?}"
    );
    assert_eq!(kv.range("k", 0).await.unwrap().kvs.len(), 10);
}

/// Nothing listens: `connect` fails within its timeout with `Unavailable`, naming the
/// endpoint.
#[tokio::test(flavor = "multi_thread")]
async fn etcd_connect_to_nothing_is_unavailable() {
    let port = etcd::free_ports(1)[0];
    let endpoint = format!("http://127.0.0.1:{port}");
    let mut config = EtcdConfig::new(vec![endpoint.clone()]);
    config.connect_timeout = Duration::from_secs(1);
    let started = Instant::now();
    let result = EtcdKv::connect(config).await;
    let took = started.elapsed();
    match result {
        Err(KvError::Unavailable(why)) => {
            assert!(
                why.contains(&endpoint),
                "the error does not name the endpoint: {why}"
            );
        }
        other => panic!("connect to nothing returned {other:?}"),
    }
    assert!(
        took < Duration::from_millis(2500),
        "connect to nothing took {took:?} with a 1 s timeout"
    );
}
