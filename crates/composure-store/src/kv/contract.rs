//! The key-value contract: what every [`Kv`] backend must do, as executable checks.
//!
//! The documentation of [`Kv`] and of the [module](super) is the contract; these checks pin
//! down the etcd semantics the domain layer relies on: one store revision, bumped once per
//! transaction that changes something; reads that return the revision they saw; compares on
//! mod revisions (0: absent); conflicting transactions that apply nothing; prefix ranges and
//! deletes; watches that deliver every change in revision order, from the past too, and fail
//! with [`KvError::Compacted`] once their history is gone; leases whose keys go when they
//! are revoked or expire. The same checks run against SQLite and a real etcd cluster
//! (`tests/kv_contract.rs`), which keeps both honest.
//!
//! Each check works under its own keys, `<prefix><check>/`, so that suites can share a store
//! (several runs on one etcd; [`run_all`] picks a random prefix). Two things are global to a
//! store and the checks allow for others using it at the same time: they never assert that
//! nothing else changed the revision (a check that needs "exactly one more" retries a few
//! times), and `watch_compacted` compacts the whole store's history up to the present, which
//! fails watches from the past that another suite is running at that moment.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::time::{Instant, sleep, timeout_at};

use super::{
    Compare, KeyValue, Kv, KvError, Op, Revision, Txn, TxnOutcome, WatchEvent, WatchKind,
    WatchStream,
};

/// The checks, by name, in the order [`run_all`] runs them.
pub const CHECKS: &[&str] = &[
    "reads_return_revisions",
    "one_revision_per_transaction",
    "create_and_mod_revisions",
    "compare_and_swap",
    "compare_absent",
    "conflict_applies_nothing",
    "txn_changes_each_key_once",
    "delete_and_delete_prefix",
    "range_by_prefix",
    "range_min_mod_revision",
    "range_oldest_pages_in_change_order",
    "watch_delivers_in_order",
    "watch_from_the_past",
    "watch_compacted",
    "lease_revoke",
    "lease_expiry",
    "lease_ended",
];

/// How long a check waits for something that should happen at once. Only reached when the
/// backend fails the check: it bounds the wait, it measures nothing.
const DEADLINE: Duration = Duration::from_secs(10);

/// The TTL of the leases that the expiry check lets run out. etcd raises a TTL to its
/// minimum (1.5 election timeouts, rounded up to seconds: 2 s with the default settings).
const SHORT_TTL: Duration = Duration::from_secs(1);

/// How long a lease with [`SHORT_TTL`] is kept alive before it is let go: longer than the
/// TTL that etcd really applies, so that the key surviving it proves the renewals worked.
const KEEP_ALIVE_FOR: Duration = Duration::from_millis(2500);

/// How many times a check that needs nobody else to write in between tries.
const ATTEMPTS: usize = 10;

/// The checks that failed, each with why.
pub struct ContractError {
    pub failures: Vec<(String, String)>,
}

impl std::fmt::Display for ContractError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} key-value contract check(s) failed:",
            self.failures.len()
        )?;
        for (check, why) in &self.failures {
            writeln!(f, "- {check}: {why}")?;
        }
        Ok(())
    }
}

// Debug as Display, so that `run_all(..).await.unwrap()` prints a readable report.
impl std::fmt::Debug for ContractError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for ContractError {}

/// Runs every check in [`CHECKS`], one after the other, under a random prefix
/// (`contract/<random>/`), and reports all failures.
pub async fn run_all(kv: &dyn Kv) -> Result<(), ContractError> {
    let prefix = format!("contract/{:016x}/", fastrand::u64(..));
    let mut failures = Vec::new();
    for check in CHECKS {
        if let Err(why) = run_check(kv, &prefix, check).await {
            failures.push(((*check).to_owned(), why));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(ContractError { failures })
    }
}

/// Runs one check of [`CHECKS`] under the keys `<prefix><check>/`.
pub async fn run_check(kv: &dyn Kv, prefix: &str, check: &str) -> Result<(), String> {
    let c = Ctx {
        kv,
        base: format!("{prefix}{check}/"),
    };
    match check {
        "reads_return_revisions" => reads_return_revisions(&c).await,
        "one_revision_per_transaction" => one_revision_per_transaction(&c).await,
        "create_and_mod_revisions" => create_and_mod_revisions(&c).await,
        "compare_and_swap" => compare_and_swap(&c).await,
        "compare_absent" => compare_absent(&c).await,
        "conflict_applies_nothing" => conflict_applies_nothing(&c).await,
        "txn_changes_each_key_once" => txn_changes_each_key_once(&c).await,
        "delete_and_delete_prefix" => delete_and_delete_prefix(&c).await,
        "range_by_prefix" => range_by_prefix(&c).await,
        "range_min_mod_revision" => range_min_mod_revision(&c).await,
        "range_oldest_pages_in_change_order" => range_oldest_pages_in_change_order(&c).await,
        "watch_delivers_in_order" => watch_delivers_in_order(&c).await,
        "watch_from_the_past" => watch_from_the_past(&c).await,
        "watch_compacted" => watch_compacted(&c).await,
        "lease_revoke" => lease_revoke(&c).await,
        "lease_expiry" => lease_expiry(&c).await,
        "lease_ended" => lease_ended(&c).await,
        other => Err(format!("no contract check is named `{other}`")),
    }
}

/// Fails the check with a message unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($message:tt)+) => {
        if !$cond {
            return Err(format!($($message)+));
        }
    };
}

/// Turns a backend error into a check failure that says which call failed.
trait Context<T> {
    fn context(self, call: &str) -> Result<T, String>;
}

impl<T> Context<T> for Result<T, KvError> {
    fn context(self, call: &str) -> Result<T, String> {
        self.map_err(|error| format!("{call} failed: {error} ({error:?})"))
    }
}

/// One check's world: the backend, and the prefix of its keys.
struct Ctx<'a> {
    kv: &'a dyn Kv,
    base: String,
}

impl Ctx<'_> {
    /// The check's key `name`.
    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.base)
    }

    /// Commits `txn`, which must not conflict; returns its revision.
    async fn commit(&self, txn: Txn, what: &str) -> Result<Revision, String> {
        match self.kv.txn(txn).await.context(what)? {
            TxnOutcome::Committed(revision) => Ok(revision),
            TxnOutcome::Conflict => Err(format!("{what}: conflict, expected it to commit")),
        }
    }

    /// Puts `name` (one transaction); returns its revision.
    async fn put(&self, name: &str, value: &str) -> Result<Revision, String> {
        let txn = Txn::new().then(Op::put(self.key(name), value.as_bytes().to_vec()));
        self.commit(txn, &format!("put {name}={value}")).await
    }

    /// Runs `txn`, which must conflict.
    async fn conflict(&self, txn: Txn, what: &str) -> Result<(), String> {
        match self.kv.txn(txn).await.context(what)? {
            TxnOutcome::Conflict => Ok(()),
            TxnOutcome::Committed(revision) => Err(format!(
                "{what}: committed at revision {revision}, expected a conflict"
            )),
        }
    }

    async fn get(&self, name: &str) -> Result<(Revision, Option<KeyValue>), String> {
        self.kv
            .get(&self.key(name))
            .await
            .context(&format!("get {name}"))
    }

    /// The key, which must exist.
    async fn existing(&self, name: &str) -> Result<KeyValue, String> {
        self.get(name)
            .await?
            .1
            .ok_or_else(|| format!("{name} does not exist, expected it to"))
    }

    async fn absent(&self, name: &str) -> Result<(), String> {
        if let (_, Some(kv)) = self.get(name).await? {
            return Err(format!("{name} exists ({kv:?}), expected it not to"));
        }
        Ok(())
    }

    /// The keys under the check's `prefix` (relative to its base), without their base.
    async fn names(&self, prefix: &str, min_mod_revision: Revision) -> Result<Vec<String>, String> {
        let range = self
            .kv
            .range(&self.key(prefix), min_mod_revision)
            .await
            .context(&format!("range {prefix:?} from {min_mod_revision}"))?;
        Ok(range
            .kvs
            .into_iter()
            .map(|kv| {
                kv.key
                    .strip_prefix(&self.base)
                    .unwrap_or(&kv.key)
                    .to_string()
            })
            .collect())
    }

    /// The store's revision now.
    async fn revision(&self) -> Result<Revision, String> {
        Ok(self
            .kv
            .range(&self.key(""), 0)
            .await
            .context("range")?
            .revision)
    }

    /// A watch of the check's `prefix` after `after` (an error is a failure).
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, String> {
        self.kv
            .watch(&self.key(prefix), after)
            .await
            .context(&format!("watch {prefix:?} after {after}"))
    }

    /// An event as the check expects it.
    fn event(&self, revision: Revision, name: &str, value: Option<&str>) -> WatchEvent {
        WatchEvent {
            revision,
            key: self.key(name),
            kind: match value {
                Some(value) => WatchKind::Put(value.as_bytes().to_vec()),
                None => WatchKind::Delete,
            },
        }
    }
}

/// The next `count` events of `stream`, within [`DEADLINE`].
async fn next_events(stream: &mut WatchStream, count: usize) -> Result<Vec<WatchEvent>, String> {
    let deadline = Instant::now() + DEADLINE;
    let mut events = Vec::with_capacity(count);
    while events.len() < count {
        match timeout_at(deadline, stream.next()).await {
            Err(_) => {
                return Err(format!(
                    "the watch delivered {} of {count} expected events within {DEADLINE:?}: \
                     {events:?}",
                    events.len()
                ));
            }
            Ok(None) => {
                return Err(format!(
                    "the watch ended after {} of {count} expected events: {events:?}",
                    events.len()
                ));
            }
            Ok(Some(Err(err))) => {
                return Err(format!(
                    "the watch failed after {} of {count} expected events ({events:?}): {err}",
                    events.len()
                ));
            }
            Ok(Some(Ok(event))) => events.push(event),
        }
    }
    Ok(events)
}

/// Checks that `stream` delivers exactly `expected` next.
async fn expect_events(
    stream: &mut WatchStream,
    expected: &[WatchEvent],
    what: &str,
) -> Result<(), String> {
    let events = next_events(stream, expected.len())
        .await
        .map_err(|why| format!("{what}: {why}"))?;
    ensure!(
        events == expected,
        "{what}: the watch delivered\n  {events:?}\nexpected\n  {expected:?}"
    );
    Ok(())
}

/// Checks that a watch from `after` fails with `Compacted` (when it is created, or as the
/// first item of its stream, which then ends), and returns the compact revision it names.
async fn expect_compacted(c: &Ctx<'_>, after: Revision) -> Result<Revision, String> {
    let mut stream = match c.kv.watch(&c.key(""), after).await {
        Err(KvError::Compacted { compact_revision }) => return Ok(compact_revision),
        Err(err) => {
            return Err(format!(
                "watch after {after}: failed with {err} ({err:?}), expected Compacted"
            ));
        }
        Ok(stream) => stream,
    };
    let deadline = Instant::now() + DEADLINE;
    let compact_revision = match timeout_at(deadline, stream.next()).await {
        Ok(Some(Err(KvError::Compacted { compact_revision }))) => compact_revision,
        Ok(Some(Err(err))) => {
            return Err(format!(
                "watch after {after}: failed with {err} ({err:?}), expected Compacted"
            ));
        }
        Ok(Some(Ok(event))) => {
            return Err(format!(
                "watch after {after}: delivered {event:?} from compacted history, expected \
                 Compacted"
            ));
        }
        Ok(None) => return Err(format!("watch after {after}: ended without Compacted")),
        Err(_) => {
            return Err(format!(
                "watch after {after}: no Compacted within {DEADLINE:?}"
            ));
        }
    };
    match timeout_at(deadline, stream.next()).await {
        Ok(None) => Ok(compact_revision),
        Ok(Some(item)) => Err(format!(
            "watch after {after}: went on after Compacted with {item:?}, expected it to end"
        )),
        Err(_) => Err(format!(
            "watch after {after}: did not end within {DEADLINE:?} after Compacted"
        )),
    }
}

/// Waits until `cond` holds, re-reading every 50 ms, for at most `bound`.
async fn wait_for<F, Fut>(bound: Duration, what: &str, mut cond: F) -> Result<Duration, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool, String>>,
{
    let start = Instant::now();
    loop {
        if cond().await? {
            return Ok(start.elapsed());
        }
        if start.elapsed() >= bound {
            return Err(format!("{what}: not within {bound:?}"));
        }
        sleep(Duration::from_millis(50)).await;
    }
}

/// `get` and `range` return the store's revision, and keys carry theirs.
async fn reads_return_revisions(c: &Ctx<'_>) -> Result<(), String> {
    let written = c.put("a", "1").await?;
    ensure!(written > 0, "a committed put returned revision 0");
    let (revision, kv) = c.get("a").await?;
    ensure!(
        revision >= written,
        "get after a put at {written} returned the older revision {revision}"
    );
    let kv = kv.ok_or("get of a key just put found nothing")?;
    ensure!(
        kv.value == b"1" && kv.mod_revision == written && kv.create_revision == written,
        "get returned {kv:?}, expected value 1 created and changed at {written}"
    );
    let (revision, kv) = c.get("missing").await?;
    ensure!(kv.is_none(), "get of a key never put returned {kv:?}");
    ensure!(
        revision >= written,
        "get of a missing key after a put at {written} returned the older revision {revision}"
    );
    let range = c.kv.range(&c.key(""), 0).await.context("range")?;
    ensure!(
        range.revision >= written,
        "range after a put at {written} returned the older revision {}",
        range.revision
    );
    ensure!(
        range.kvs.len() == 1 && range.kvs[0].mod_revision == written,
        "range returned {:?}, expected a at {written}",
        range.kvs
    );
    Ok(())
}

/// A transaction bumps the revision by exactly one, however many keys it changes; one that
/// changes nothing leaves it.
async fn one_revision_per_transaction(c: &Ctx<'_>) -> Result<(), String> {
    let txn = Txn::new()
        .then(Op::put(c.key("a"), b"1".to_vec()))
        .then(Op::put(c.key("b"), b"2".to_vec()))
        .then(Op::put(c.key("c"), b"3".to_vec()));
    let revision = c.commit(txn, "put a, b, c").await?;
    for name in ["a", "b", "c"] {
        let kv = c.existing(name).await?;
        ensure!(
            kv.mod_revision == revision && kv.create_revision == revision,
            "{name} of a transaction at {revision} was {kv:?}: every key of one \
             transaction has its revision"
        );
    }
    // Exactly one more: another writer of the store may come in between, so try again
    // until no one did.
    let mut seen = Vec::new();
    for attempt in 0..ATTEMPTS {
        let before = c.revision().await?;
        // Changes a, deletes c (the first time; then it changes nothing) and puts d.
        let txn = Txn::new()
            .then(Op::put(c.key("a"), format!("x{attempt}").into_bytes()))
            .then(Op::delete(c.key("c")))
            .then(Op::put(c.key("d"), format!("y{attempt}").into_bytes()));
        let after = c.commit(txn, "a transaction of several changes").await?;
        if after == before + 1 {
            seen.clear();
            break;
        }
        seen.push((before, after));
    }
    ensure!(
        seen.is_empty(),
        "a transaction of several changes did not bump the revision by exactly one in \
         {ATTEMPTS} attempts (before, after): {seen:?}"
    );
    // A transaction that changes nothing leaves the revision.
    let mut seen = Vec::new();
    for _ in 0..ATTEMPTS {
        let before = c.revision().await?;
        let txn = Txn::new().then(Op::delete(c.key("never-put")));
        let after = c.commit(txn, "delete a missing key").await?;
        if after == before {
            seen.clear();
            break;
        }
        seen.push((before, after));
    }
    ensure!(
        seen.is_empty(),
        "a transaction that changes nothing moved the revision in {ATTEMPTS} attempts \
         (before, after): {seen:?}"
    );
    Ok(())
}

/// A key remembers the revision that created it and the one that last changed it; deleted
/// and put again, it is a new key.
async fn create_and_mod_revisions(c: &Ctx<'_>) -> Result<(), String> {
    let created = c.put("k", "1").await?;
    let changed = c.put("k", "2").await?;
    ensure!(
        changed > created,
        "a second put committed at {changed}, not after the first at {created}"
    );
    let kv = c.existing("k").await?;
    ensure!(
        kv.create_revision == created && kv.mod_revision == changed && kv.value == b"2",
        "after puts at {created} and {changed}, k is {kv:?}"
    );
    let deleted = c
        .commit(Txn::new().then(Op::delete(c.key("k"))), "delete k")
        .await?;
    ensure!(
        deleted > changed,
        "the delete committed at {deleted}, not after {changed}"
    );
    c.absent("k").await?;
    let recreated = c.put("k", "3").await?;
    let kv = c.existing("k").await?;
    ensure!(
        kv.create_revision == recreated && kv.mod_revision == recreated,
        "k put again at {recreated} after a delete is {kv:?}: it is a new key"
    );
    Ok(())
}

/// A write guarded by the revision it read commits while the key is unchanged, and
/// conflicts once it changed.
async fn compare_and_swap(c: &Ctx<'_>) -> Result<(), String> {
    c.put("k", "1").await?;
    let read = c.existing("k").await?;
    let guarded = |value: &str| {
        Txn::new()
            .when(Compare::unchanged(c.key("k"), read.mod_revision))
            .then(Op::put(c.key("k"), value.as_bytes().to_vec()))
    };
    let swapped = c
        .commit(guarded("2"), "a write guarded by the revision read")
        .await?;
    c.conflict(guarded("3"), "a write guarded by a revision since changed")
        .await?;
    let kv = c.existing("k").await?;
    ensure!(
        kv.value == b"2" && kv.mod_revision == swapped,
        "after a committed and a conflicting guarded write, k is {kv:?}, expected 2 at \
         {swapped}"
    );
    // Guarded by the new revision, it commits again.
    let txn = Txn::new()
        .when(Compare::unchanged(c.key("k"), swapped))
        .then(Op::put(c.key("k"), b"4".to_vec()));
    c.commit(txn, "a write guarded by the current revision")
        .await?;
    Ok(())
}

/// Revision 0 in a compare means "absent": it holds for a key never put and one deleted,
/// and fails for a key that exists.
async fn compare_absent(c: &Ctx<'_>) -> Result<(), String> {
    let create = |name: &str| {
        Txn::new()
            .when(Compare::unchanged(c.key(name), 0))
            .then(Op::put(c.key(name), b"created".to_vec()))
    };
    c.commit(create("k"), "create k if absent (never put)")
        .await?;
    c.conflict(create("k"), "create k if absent (it exists)")
        .await?;
    let kv = c.existing("k").await?;
    ensure!(kv.value == b"created", "k is {kv:?}");
    c.commit(Txn::new().then(Op::delete(c.key("k"))), "delete k")
        .await?;
    c.commit(create("k"), "create k if absent (deleted)")
        .await?;
    // A compare on a missing key with its old revision fails.
    let stale = Txn::new()
        .when(Compare::unchanged(c.key("gone"), kv.mod_revision))
        .then(Op::put(c.key("gone"), b"x".to_vec()));
    c.conflict(
        stale,
        "a write guarded by a nonzero revision of a missing key",
    )
    .await?;
    c.absent("gone").await
}

/// A transaction with one failing compare among several applies none of its changes.
async fn conflict_applies_nothing(c: &Ctx<'_>) -> Result<(), String> {
    let a = c.put("a", "1").await?;
    let b = c.put("b", "2").await?;
    let txn = Txn::new()
        .when(Compare::unchanged(c.key("a"), a))
        .when(Compare::unchanged(c.key("b"), a))
        .then(Op::put(c.key("a"), b"changed".to_vec()))
        .then(Op::delete(c.key("b")))
        .then(Op::put(c.key("new"), b"x".to_vec()))
        .then(Op::delete_prefix(c.key("gone/")));
    c.conflict(txn, "a transaction whose second compare fails")
        .await?;
    let kv_a = c.existing("a").await?;
    let kv_b = c.existing("b").await?;
    ensure!(
        kv_a.value == b"1"
            && kv_a.mod_revision == a
            && kv_b.value == b"2"
            && kv_b.mod_revision == b,
        "a conflicting transaction changed something: a is {kv_a:?}, b is {kv_b:?}"
    );
    c.absent("new").await
}

/// A transaction changes each key at most once: etcd refuses one that puts a key twice, or
/// puts a key that one of its deletes covers ("duplicate key given in txn request"),
/// whether its compares hold or not, and so must every backend, so that what works on one
/// host works in a cluster. Deletes may overlap.
async fn txn_changes_each_key_once(c: &Ctx<'_>) -> Result<(), String> {
    let refused = [
        (
            "put a twice",
            Txn::new()
                .then(Op::put(c.key("a"), b"1".to_vec()))
                .then(Op::put(c.key("a"), b"2".to_vec())),
        ),
        (
            "put a and delete it",
            Txn::new()
                .then(Op::put(c.key("a"), b"1".to_vec()))
                .then(Op::delete(c.key("a"))),
        ),
        (
            "delete the prefix p/ and put p/a",
            Txn::new()
                .then(Op::delete_prefix(c.key("p/")))
                .then(Op::put(c.key("p/a"), b"1".to_vec())),
        ),
        (
            "put a twice, guarded by a compare that fails",
            Txn::new()
                .when(Compare::unchanged(c.key("a"), 1))
                .then(Op::put(c.key("a"), b"1".to_vec()))
                .then(Op::put(c.key("a"), b"2".to_vec())),
        ),
    ];
    for (what, txn) in refused {
        let result = c.kv.txn(txn).await;
        ensure!(
            matches!(result, Err(KvError::Backend(_))),
            "a transaction that would {what} returned {result:?}, expected it refused (as \
             etcd refuses it)"
        );
    }
    c.absent("a").await?;
    c.absent("p/a").await?;
    c.put("p/a", "1").await?;
    c.put("p/b", "2").await?;
    c.commit(
        Txn::new()
            .then(Op::delete(c.key("p/a")))
            .then(Op::delete_prefix(c.key("p/")))
            .then(Op::delete(c.key("p/b"))),
        "overlapping deletes",
    )
    .await?;
    let names = c.names("", 0).await?;
    ensure!(
        names.is_empty(),
        "after overlapping deletes, keys remain: {names:?}"
    );
    Ok(())
}

/// A delete removes one key; a prefix delete every key under the prefix (one revision),
/// and none beside it.
async fn delete_and_delete_prefix(c: &Ctx<'_>) -> Result<(), String> {
    let txn = ["p/a", "p/b", "p/c/d", "p", "pX", "q"]
        .into_iter()
        .fold(Txn::new(), |txn, name| {
            txn.then(Op::put(c.key(name), name.as_bytes().to_vec()))
        });
    c.commit(txn, "put the keys").await?;
    c.commit(Txn::new().then(Op::delete(c.key("p/a"))), "delete p/a")
        .await?;
    c.absent("p/a").await?;
    let names = c.names("", 0).await?;
    ensure!(
        names == ["p", "p/b", "p/c/d", "pX", "q"],
        "after deleting p/a, the keys are {names:?}"
    );
    let deleted = c
        .commit(
            Txn::new().then(Op::delete_prefix(c.key("p/"))),
            "delete prefix p/",
        )
        .await?;
    let names = c.names("", 0).await?;
    ensure!(
        names == ["p", "pX", "q"],
        "after deleting the prefix p/, the keys are {names:?} (expected p, pX and q to stay)"
    );
    // The prefix delete was one change of the store: a watch from before it sees both keys
    // deleted at its revision.
    let mut watch = c.watch("p/", deleted - 1).await?;
    expect_events(
        &mut watch,
        &[
            c.event(deleted, "p/b", None),
            c.event(deleted, "p/c/d", None),
        ],
        "the prefix delete",
    )
    .await?;
    // Deleting what is not there changes nothing and succeeds.
    c.commit(
        Txn::new()
            .then(Op::delete(c.key("p/a")))
            .then(Op::delete_prefix(c.key("nothing/"))),
        "delete missing keys",
    )
    .await?;
    c.commit(
        Txn::new().then(Op::delete_prefix(c.key(""))),
        "delete everything",
    )
    .await?;
    let names = c.names("", 0).await?;
    ensure!(
        names.is_empty(),
        "after deleting the check's prefix, keys remain: {names:?}"
    );
    Ok(())
}

/// A range lists the keys under its prefix (the prefix itself included), sorted by key.
async fn range_by_prefix(c: &Ctx<'_>) -> Result<(), String> {
    // Put in an order that is not the keys' order.
    for name in ["x/c", "x/a", "xy", "x", "x/b/1", "w"] {
        c.put(name, name).await?;
    }
    let names = c.names("x/", 0).await?;
    ensure!(
        names == ["x/a", "x/b/1", "x/c"],
        "range x/ returned {names:?}"
    );
    let names = c.names("x", 0).await?;
    ensure!(
        names == ["x", "x/a", "x/b/1", "x/c", "xy"],
        "range x returned {names:?}"
    );
    let names = c.names("", 0).await?;
    ensure!(
        names == ["w", "x", "x/a", "x/b/1", "x/c", "xy"],
        "range of the check's prefix returned {names:?}"
    );
    let names = c.names("z/", 0).await?;
    ensure!(
        names.is_empty(),
        "range of an empty prefix returned {names:?}"
    );
    let range = c.kv.range(&c.key("x/"), 0).await.context("range x/")?;
    ensure!(
        range
            .kvs
            .iter()
            .all(|kv| kv.value == kv.key.strip_prefix(&c.base).unwrap_or("").as_bytes()),
        "range returned values that are not the keys': {:?}",
        range.kvs
    );
    // The empty prefix is every key of the store: it includes the check's.
    let all = c.kv.range("", 0).await.context("range of every key")?;
    let mine = all
        .kvs
        .iter()
        .filter(|kv| kv.key.starts_with(&c.base))
        .count();
    ensure!(
        mine == 6,
        "range of every key found {mine} of the check's 6 keys"
    );
    Ok(())
}

/// A range from a mod revision lists only the keys changed since.
async fn range_oldest_pages_in_change_order(c: &Ctx<'_>) -> Result<(), String> {
    // Changed in an order that is not the keys' order; `b` twice.
    for (name, value) in [
        ("p/c", "1"),
        ("p/a", "1"),
        ("p/b", "1"),
        ("p/d", "1"),
        ("p/b", "2"),
    ] {
        c.put(name, value).await?;
    }
    c.put("q", "outside the prefix").await?;
    let mut seen = Vec::new();
    let mut from = 0;
    loop {
        let page =
            c.kv.range_oldest(&c.key("p/"), from, 2)
                .await
                .context("range_oldest")?;
        ensure!(page.kvs.len() <= 2, "a page of 2 held {}", page.kvs.len());
        let Some(last) = page.kvs.last() else {
            break;
        };
        from = last.mod_revision + 1;
        seen.extend(
            page.kvs
                .iter()
                .map(|kv| kv.key.strip_prefix(&c.base).unwrap_or(&kv.key).to_string()),
        );
    }
    ensure!(
        seen == ["p/c", "p/a", "p/d", "p/b"],
        "pages of the oldest changes returned {seen:?}"
    );
    Ok(())
}

async fn range_min_mod_revision(c: &Ctx<'_>) -> Result<(), String> {
    let _a = c.put("a", "1").await?;
    let b = c.put("b", "1").await?;
    let _c = c.put("c", "1").await?;
    let a2 = c.put("a", "2").await?;
    let names = c.names("", b + 1).await?;
    ensure!(
        names == ["a", "c"],
        "range from {} (after b) returned {names:?}, expected a and c",
        b + 1
    );
    let names = c.names("", b).await?;
    ensure!(
        names == ["a", "b", "c"],
        "range from {b} returned {names:?}"
    );
    let names = c.names("", a2).await?;
    ensure!(names == ["a"], "range from {a2} returned {names:?}");
    let names = c.names("", a2 + 1).await?;
    ensure!(
        names.is_empty(),
        "range from after the last change returned {names:?}"
    );
    let names = c.names("", 0).await?;
    ensure!(names == ["a", "b", "c"], "range from 0 returned {names:?}");
    Ok(())
}

/// A watch delivers every change under its prefix, in revision order, each with its
/// revision (the changes of one transaction share it, in the transaction's order), and
/// nothing outside the prefix.
async fn watch_delivers_in_order(c: &Ctx<'_>) -> Result<(), String> {
    let start = c.revision().await?;
    let mut watch = c.watch("w/", start).await?;
    // Outside the prefix (a key that shares its first letter): not delivered.
    c.put("wx", "outside").await?;
    let r1 = c.put("w/a", "1").await?;
    let r2 = c
        .commit(
            Txn::new()
                .then(Op::put(c.key("w/c"), b"2".to_vec()))
                .then(Op::put(c.key("w/b"), b"3".to_vec()))
                .then(Op::put(c.key("outside"), b"x".to_vec())),
            "put w/c, w/b and outside",
        )
        .await?;
    let r3 = c
        .commit(Txn::new().then(Op::delete(c.key("w/a"))), "delete w/a")
        .await?;
    let r4 = c.put("w/b", "4").await?;
    let r5 = c
        .commit(
            Txn::new().then(Op::delete_prefix(c.key("w/"))),
            "delete prefix w/",
        )
        .await?;
    ensure!(
        r1 < r2 && r2 < r3 && r3 < r4 && r4 < r5,
        "transactions one after another committed at {r1}, {r2}, {r3}, {r4}, {r5}"
    );
    expect_events(
        &mut watch,
        &[
            c.event(r1, "w/a", Some("1")),
            c.event(r2, "w/c", Some("2")),
            c.event(r2, "w/b", Some("3")),
            c.event(r3, "w/a", None),
            c.event(r4, "w/b", Some("4")),
            c.event(r5, "w/b", None),
            c.event(r5, "w/c", None),
        ],
        "a watch of w/",
    )
    .await?;
    // A second watch of the same prefix, from the same revision, sees the same.
    let mut again = c.watch("w/", start).await?;
    let events = next_events(&mut again, 7).await?;
    ensure!(
        events.first().map(|e| e.revision) == Some(r1)
            && events.last().map(|e| e.revision) == Some(r5),
        "a second watch from {start} delivered {events:?}"
    );
    Ok(())
}

/// A watch from a past revision replays the history after it, then goes on live.
async fn watch_from_the_past(c: &Ctx<'_>) -> Result<(), String> {
    let before = c.revision().await?;
    let r1 = c.put("k", "1").await?;
    let r2 = c.put("k", "2").await?;
    let r3 = c
        .commit(Txn::new().then(Op::delete(c.key("k"))), "delete k")
        .await?;
    let mut watch = c.watch("", before).await?;
    expect_events(
        &mut watch,
        &[
            c.event(r1, "k", Some("1")),
            c.event(r2, "k", Some("2")),
            c.event(r3, "k", None),
        ],
        "a watch from before three changes",
    )
    .await?;
    let r4 = c.put("k", "4").await?;
    expect_events(
        &mut watch,
        &[c.event(r4, "k", Some("4"))],
        "the same watch, live",
    )
    .await?;
    // From a revision in the middle: only what came after it.
    let mut watch = c.watch("", r2).await?;
    expect_events(
        &mut watch,
        &[c.event(r3, "k", None), c.event(r4, "k", Some("4"))],
        &format!("a watch after {r2}"),
    )
    .await?;
    // From the present: nothing until the next change.
    let mut watch = c.watch("", r4).await?;
    let r5 = c.put("k", "5").await?;
    expect_events(
        &mut watch,
        &[c.event(r5, "k", Some("5"))],
        &format!("a watch after {r4}"),
    )
    .await
}

/// Compaction drops the history before its revision (its own revision stays): a watch from
/// before it fails with `Compacted`, and a re-list then a watch from the list's revision
/// works. Compacting the future is an error; compacting again the past is not.
async fn watch_compacted(c: &Ctx<'_>) -> Result<(), String> {
    let r1 = c.put("a", "1").await?;
    let r2 = c.put("b", "2").await?;
    let r3 = c.put("c", "3").await?;
    c.kv.compact(r3)
        .await
        .context(&format!("compact at {r3}"))?;
    let compact_revision = expect_compacted(c, r1 - 1).await?;
    ensure!(
        compact_revision >= r3,
        "a watch from before a compaction at {r3} said history was compacted up to \
         {compact_revision}"
    );
    let compact_revision = expect_compacted(c, r2 - 1).await?;
    ensure!(
        compact_revision >= r3,
        "the second watch said history was compacted up to {compact_revision}"
    );
    // The compaction's own revision is kept.
    let mut watch = c.watch("", r3 - 1).await?;
    expect_events(
        &mut watch,
        &[c.event(r3, "c", Some("3"))],
        &format!("a watch from the compaction's revision {r3}"),
    )
    .await?;
    // The keys stay; re-list, then watch from the list's revision.
    let range = c.kv.range(&c.key(""), 0).await.context("re-list")?;
    let names: Vec<_> = range.kvs.iter().map(|kv| kv.key.clone()).collect();
    ensure!(
        names == [c.key("a"), c.key("b"), c.key("c")],
        "after compaction, the keys are {names:?}"
    );
    let mut watch = c.watch("", range.revision).await?;
    let r4 = c.put("d", "4").await?;
    expect_events(
        &mut watch,
        &[c.event(r4, "d", Some("4"))],
        "a watch from the re-list's revision",
    )
    .await?;
    // Compacting the past again is fine; the future is not there to compact.
    c.kv.compact(r1)
        .await
        .context(&format!("compact at {r1}, before the last compaction"))?;
    let future = r4 + 1_000_000;
    ensure!(
        c.kv.compact(future).await.is_err(),
        "compacting at {future}, beyond the store's revision {r4}, succeeded"
    );
    Ok(())
}

/// A key under a lease goes when the lease is revoked (a watch sees it deleted); the key
/// beside it, without the lease, stays.
async fn lease_revoke(c: &Ctx<'_>) -> Result<(), String> {
    let lease =
        c.kv.grant_lease(Duration::from_secs(60))
            .await
            .context("grant a lease")?;
    ensure!(lease != 0, "grant returned lease 0 (\"no lease\")");
    let put = c
        .commit(
            Txn::new()
                .then(Op::Put {
                    key: c.key("leased"),
                    value: b"1".to_vec(),
                    lease,
                })
                .then(Op::put(c.key("kept"), b"2".to_vec())),
            "put a key under the lease and one without",
        )
        .await?;
    c.existing("leased").await?;
    let mut watch = c.watch("", put).await?;
    c.kv.revoke_lease(lease).await.context("revoke the lease")?;
    c.absent("leased").await?;
    c.existing("kept").await?;
    let events = next_events(&mut watch, 1).await?;
    ensure!(
        events[0].key == c.key("leased")
            && events[0].kind == WatchKind::Delete
            && events[0].revision > put,
        "after revoking the lease, the watch delivered {events:?}, expected leased deleted"
    );
    ensure!(
        c.kv.keep_alive(lease).await.is_err(),
        "keep-alive of a revoked lease succeeded"
    );
    // Revoking it again: the lease is gone either way.
    let _ = c.kv.revoke_lease(lease).await;
    Ok(())
}

/// A lease kept alive outlives its TTL; let go, its key disappears within a bounded time,
/// and the lease cannot be renewed any more.
async fn lease_expiry(c: &Ctx<'_>) -> Result<(), String> {
    let lease =
        c.kv.grant_lease(SHORT_TTL)
            .await
            .context("grant a short lease")?;
    c.commit(
        Txn::new().then(Op::Put {
            key: c.key("leased"),
            value: b"1".to_vec(),
            lease,
        }),
        "put a key under the lease",
    )
    .await?;
    c.existing("leased").await?;
    let kept_until = Instant::now() + KEEP_ALIVE_FOR;
    while Instant::now() < kept_until {
        sleep(Duration::from_millis(300)).await;
        c.kv.keep_alive(lease)
            .await
            .context("keep the lease alive")?;
    }
    c.existing("leased")
        .await
        .map_err(|why| format!("{why}: the lease was kept alive for {KEEP_ALIVE_FOR:?}"))?;
    let bound = SHORT_TTL + Duration::from_secs(8);
    let took = wait_for(bound, "the key of a lease let go disappears", || async {
        Ok(c.get("leased").await?.1.is_none())
    })
    .await?;
    ensure!(
        took >= SHORT_TTL / 2,
        "the key of a lease with TTL {SHORT_TTL:?} disappeared {took:?} after its last \
         keep-alive"
    );
    let renewed = c.kv.keep_alive(lease).await;
    ensure!(renewed.is_err(), "keep-alive of an expired lease succeeded");
    Ok(())
}

/// A lease that ended cannot be renewed, and a key cannot be put under it.
async fn lease_ended(c: &Ctx<'_>) -> Result<(), String> {
    let lease =
        c.kv.grant_lease(Duration::from_secs(60))
            .await
            .context("grant a lease")?;
    c.kv.keep_alive(lease)
        .await
        .context("keep-alive of a live lease")?;
    c.kv.revoke_lease(lease).await.context("revoke the lease")?;
    ensure!(
        c.kv.keep_alive(lease).await.is_err(),
        "keep-alive of a revoked lease succeeded"
    );
    let put =
        c.kv.txn(Txn::new().then(Op::Put {
            key: c.key("orphan"),
            value: b"1".to_vec(),
            lease,
        }))
        .await;
    ensure!(
        put.is_err(),
        "a put under a revoked lease returned {put:?}, expected an error"
    );
    c.absent("orphan").await
}
