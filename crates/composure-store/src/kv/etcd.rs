//! The key-value interface on an etcd v3 cluster: the backend of a cluster of daemons.
//!
//! Every key lives under [`EtcdConfig::prefix`] (so that several Composure clusters can share
//! one etcd); keys handed back, and those of watch events, have it stripped. Revisions,
//! compares, watches, compaction and leases are etcd's own: this backend only translates.
//!
//! **Members.** One gRPC channel is kept per endpoint, and requests go to the member that
//! answered last. A read (or a lease call, a compaction, a new watch) that finds its member
//! unreachable or without a leader is sent to the next one, until the request timeout; a
//! transaction is sent to another member only when it could not have left (the connection
//! to its member was refused), never after it may have been received: a transaction whose
//! answer was lost is [`KvError::Unavailable`], its outcome unknown. (etcd-client's own
//! balancer sends requests to members it cannot reach, so that one member down of three
//! would fail a share of all requests.)
//!
//! **Timeouts.** Every request ends within [`EtcdConfig::request_timeout`]: a cluster without
//! quorum answers [`KvError::Unavailable`], it does not hang. Requests ask for a leader
//! (etcd's `hasleader` metadata), so that a member cut off from the others says so at once
//! and a watch on it is ended rather than left silent.

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Certificate, Client, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions, Identity,
    KvClient, LeaseClient, PutOptions, SortOrder, SortTarget, TlsOptions, TxnOp, WatchClient,
    WatchOptions, WatchResponse,
};
use tokio::time::{Instant, sleep, timeout_at};

use super::{
    Compare, KeyValue, Kv, KvError, LeaseId, Op, Range, Revision, Txn, TxnOutcome, WatchEvent,
    WatchKind, WatchStream,
};

/// How long to wait before going round the members again, when each has failed once.
const ROUND_PAUSE: Duration = Duration::from_millis(100);

/// The largest response accepted (a range of many keys). etcd itself sends up to 2 GiB.
const MAX_RESPONSE_BYTES: usize = 512 * 1024 * 1024;

/// How often an idle connection with a watch on it is checked with an HTTP/2 ping (etcd
/// refuses pings more frequent than every 5 s by default).
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);

/// gRPC status codes (the numbers are the protocol's).
mod code {
    pub const CANCELLED: i32 = 1;
    pub const UNKNOWN: i32 = 2;
    pub const DEADLINE_EXCEEDED: i32 = 4;
    pub const NOT_FOUND: i32 = 5;
    pub const RESOURCE_EXHAUSTED: i32 = 8;
    pub const ABORTED: i32 = 10;
    pub const OUT_OF_RANGE: i32 = 11;
    pub const INTERNAL: i32 = 13;
    pub const UNAVAILABLE: i32 = 14;
}

/// Where the etcd cluster is and how to talk to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdConfig {
    /// The members' client URLs (`http://10.0.0.1:2379`, or `10.0.0.1:2379`: `https://` when
    /// TLS is configured, `http://` otherwise).
    pub endpoints: Vec<String>,
    /// What every key is stored under (e.g. `/composure/`).
    pub prefix: String,
    /// The CA certificate (PEM) the members' certificates are checked against; setting it
    /// (or a client certificate) turns TLS on.
    pub ca: Option<PathBuf>,
    /// The client certificate (PEM), with `key`, for members that check clients.
    pub cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    pub key: Option<PathBuf>,
    /// How long [`EtcdKv::connect`] tries before giving up.
    pub connect_timeout: Duration,
    /// How long one request may take, failover to other members included.
    pub request_timeout: Duration,
}

impl EtcdConfig {
    pub const DEFAULT_PREFIX: &'static str = "/composure/";
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

    /// The configuration for `endpoints`, without TLS, with the default prefix and timeouts.
    pub fn new(endpoints: Vec<String>) -> EtcdConfig {
        EtcdConfig {
            endpoints,
            prefix: EtcdConfig::DEFAULT_PREFIX.to_string(),
            ca: None,
            cert: None,
            key: None,
            connect_timeout: EtcdConfig::DEFAULT_CONNECT_TIMEOUT,
            request_timeout: EtcdConfig::DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

/// The etcd backend. Cheap to share: calls run concurrently over the members' channels.
pub struct EtcdKv {
    members: Vec<Member>,
    /// The member the next request goes to first: the last that answered.
    preferred: AtomicUsize,
    prefix: String,
    /// The endpoints, comma-separated, for messages.
    endpoints: String,
    request_timeout: Duration,
}

/// One member's clients (clones share its channel).
#[derive(Clone)]
struct Member {
    endpoint: String,
    kv: KvClient,
    watch: WatchClient,
    lease: LeaseClient,
}

impl fmt::Debug for EtcdKv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdKv")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

/// Whether a request may be sent again, to another member, after a failure.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Resend {
    /// Reads and idempotent calls: on any failure of the member.
    Always,
    /// A transaction: only when it cannot have reached its member.
    IfUnsent,
}

/// What a failed request says.
enum Failure {
    /// It never left: the member refused the connection.
    Unsent(String),
    /// The member is unreachable or without quorum, or the answer was lost.
    Unavailable(String),
    /// etcd answered with an error: sending it again would get the same.
    Refused { code: Option<i32>, message: String },
}

impl EtcdKv {
    /// Connects to the cluster and checks that it answers (a read under the prefix) within
    /// [`EtcdConfig::connect_timeout`]: an unreachable cluster, or one without quorum, is
    /// [`KvError::Unavailable`] naming the endpoints; a bad configuration (no endpoint, an
    /// unreadable certificate) is [`KvError::Backend`].
    pub async fn connect(config: EtcdConfig) -> Result<EtcdKv, KvError> {
        if config.endpoints.is_empty() {
            return Err(KvError::Backend(
                "no etcd endpoint is configured".to_string(),
            ));
        }
        let endpoints = config.endpoints.join(",");
        let mut options = ConnectOptions::new()
            .with_connect_timeout(config.connect_timeout)
            .with_keep_alive(KEEP_ALIVE_INTERVAL, config.request_timeout)
            .with_keep_alive_while_idle(false)
            .with_require_leader(true);
        if let Some(tls) = tls_options(&config)? {
            options = options.with_tls(tls);
        }
        let mut members = Vec::new();
        for endpoint in &config.endpoints {
            let client = Client::connect([endpoint.as_str()], Some(options.clone()))
                .await
                .map_err(|err| KvError::Backend(format!("etcd endpoint {endpoint}: {err}")))?;
            members.push(Member {
                endpoint: endpoint.clone(),
                kv: client
                    .kv_client()
                    .max_decoding_message_size(MAX_RESPONSE_BYTES),
                watch: client
                    .watch_client()
                    .max_decoding_message_size(MAX_RESPONSE_BYTES),
                lease: client.lease_client(),
            });
        }
        let kv = EtcdKv {
            members,
            preferred: AtomicUsize::new(0),
            prefix: config.prefix.clone(),
            endpoints,
            request_timeout: config.request_timeout,
        };
        let (key, end) = kv.prefix_range("");
        let deadline = Instant::now() + config.connect_timeout;
        kv.call_until("connect", deadline, Resend::Always, |member| {
            let (key, end) = (key.clone(), end.clone());
            async move {
                let options = GetOptions::new().with_range(end).with_count_only();
                member.kv.clone().get(key, Some(options)).await
            }
        })
        .await
        .map_err(|err| match err {
            KvError::Unavailable(why) => KvError::Unavailable(format!(
                "cannot reach etcd at {} within {:?} (are the endpoints and the TLS settings \
                 those of the cluster, and has it quorum?): {why}",
                kv.endpoints, config.connect_timeout
            )),
            other => other,
        })?;
        Ok(kv)
    }

    /// The key as stored: under the prefix.
    fn full_key(&self, key: &str) -> Vec<u8> {
        let mut full = Vec::with_capacity(self.prefix.len() + key.len());
        full.extend_from_slice(self.prefix.as_bytes());
        full.extend_from_slice(key.as_bytes());
        full
    }

    /// The stored range `[start, end)` of the keys under `prefix`, as etcd spells it.
    fn prefix_range(&self, prefix: &str) -> (Vec<u8>, Vec<u8>) {
        let start = self.full_key(prefix);
        let end = prefix_end(&start);
        if start.is_empty() {
            // etcd refuses an empty key: "\0" to "\0" is every key.
            (vec![0], vec![0])
        } else {
            (start, end)
        }
    }

    /// The key as handed back: without the prefix.
    fn strip(&self, stored: &[u8]) -> Result<String, KvError> {
        let key = stored.strip_prefix(self.prefix.as_bytes()).ok_or_else(|| {
            KvError::Backend(format!(
                "etcd returned a key outside the prefix {}: {}",
                self.prefix,
                String::from_utf8_lossy(stored)
            ))
        })?;
        String::from_utf8(key.to_vec()).map_err(|_| {
            KvError::Backend(format!(
                "etcd returned a key that is not UTF-8: {}",
                String::from_utf8_lossy(stored)
            ))
        })
    }

    fn key_value(&self, kv: &etcd_client::KeyValue) -> Result<KeyValue, KvError> {
        Ok(KeyValue {
            key: self.strip(kv.key())?,
            value: kv.value().to_vec(),
            create_revision: revision(kv.create_revision()),
            mod_revision: revision(kv.mod_revision()),
        })
    }

    /// Runs `request` within the request timeout (see [`EtcdKv::call_until`]).
    async fn call<T, F, Fut>(&self, what: &str, resend: Resend, request: F) -> Result<T, KvError>
    where
        F: FnMut(Member) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let deadline = Instant::now() + self.request_timeout;
        self.call_until(what, deadline, resend, request).await
    }

    /// Sends `request` to the preferred member and, as `resend` allows, to the others in
    /// turn, until one answers or `deadline` passes. etcd's refusals are
    /// [`KvError::Backend`]; the rest is [`KvError::Unavailable`].
    async fn call_until<T, F, Fut>(
        &self,
        what: &str,
        deadline: Instant,
        resend: Resend,
        mut request: F,
    ) -> Result<T, KvError>
    where
        F: FnMut(Member) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let count = self.members.len();
        let first = self.preferred.load(Ordering::Relaxed) % count;
        // What each member said last, for the error.
        let mut errors: Vec<Option<String>> = vec![None; count];
        let mut attempt = 0;
        loop {
            if attempt > 0 && attempt % count == 0 {
                // Every member failed once: give the cluster a moment (an election).
                let pause = Instant::now() + ROUND_PAUSE;
                sleep(pause.min(deadline).duration_since(Instant::now())).await;
            }
            if attempt > 0 && Instant::now() >= deadline {
                break;
            }
            let index = (first + attempt) % count;
            attempt += 1;
            let member = self.members[index].clone();
            // With several members, a read gives each of them a share of the time, so that
            // one that hangs (a stopped process, a partition) leaves time to ask the others.
            let attempt_deadline = if resend == Resend::Always && count > 1 {
                let share = self.request_timeout / u32::try_from(count).unwrap_or(u32::MAX);
                (Instant::now() + share.max(Duration::from_secs(1))).min(deadline)
            } else {
                deadline
            };
            let failure = match timeout_at(attempt_deadline, request(member)).await {
                Ok(Ok(answer)) => {
                    self.preferred.store(index, Ordering::Relaxed);
                    return Ok(answer);
                }
                Ok(Err(err)) => classify(&err),
                Err(_) => Failure::Unavailable("no answer in time".to_string()),
            };
            let (why, resent) = match failure {
                Failure::Refused { message, .. } => {
                    if message.contains("database space exceeded") {
                        return Err(KvError::Full(format!(
                            "etcd is over its space quota ({message}): compact and defragment it, or raise --quota-backend-bytes"
                        )));
                    }
                    return Err(KvError::Backend(format!("etcd refused {what}: {message}")));
                }
                Failure::Unavailable(why) => (why, resend == Resend::Always),
                Failure::Unsent(why) => (why, true),
            };
            // The member failed: the next request starts with the one after it.
            self.preferred
                .compare_exchange(
                    index,
                    (index + 1) % count,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .ok();
            if !resent {
                return Err(KvError::Unavailable(format!(
                    "etcd {what} at {}: {why} (its outcome is unknown)",
                    self.endpoint_name(index)
                )));
            }
            tracing::debug!(
                endpoint = self.endpoint_name(index),
                "etcd {what} failed, trying the next member: {why}"
            );
            errors[index] = Some(why);
        }
        let said = errors
            .iter()
            .enumerate()
            .filter_map(|(index, why)| {
                why.as_ref()
                    .map(|why| format!("{}: {why}", self.endpoint_name(index)))
            })
            .collect::<Vec<_>>()
            .join("; ");
        Err(KvError::Unavailable(format!(
            "etcd {what}: no member of {} answered in time ({said})",
            self.endpoints
        )))
    }

    fn endpoint_name(&self, index: usize) -> &str {
        &self.members[index].endpoint
    }
}

/// etcd's refusal of a request: its gRPC code (if it came as one) and message.
type Refusal = (Option<i32>, String);

/// Turns etcd's refusal of a request into an answer, for the caller to judge (an error that
/// says the member is unreachable stays an error, for [`EtcdKv::call`] to send it elsewhere).
fn keep_refusal<T>(
    result: Result<T, etcd_client::Error>,
) -> Result<Result<T, Refusal>, etcd_client::Error> {
    match result {
        Ok(answer) => Ok(Ok(answer)),
        Err(err) => match classify(&err) {
            Failure::Refused { code, message } => Ok(Err((code, message))),
            Failure::Unsent(_) | Failure::Unavailable(_) => Err(err),
        },
    }
}

/// What an etcd client error says about the request.
fn classify(err: &etcd_client::Error) -> Failure {
    match err {
        etcd_client::Error::GRpcStatus(status) => {
            let code = i32::from(status.code());
            let message = with_causes(status.message(), status);
            match code {
                code::UNAVAILABLE if connection_refused(status) => Failure::Unsent(message),
                code::UNAVAILABLE
                | code::DEADLINE_EXCEEDED
                | code::CANCELLED
                | code::UNKNOWN
                | code::ABORTED
                | code::RESOURCE_EXHAUSTED
                | code::INTERNAL => Failure::Unavailable(message),
                _ => Failure::Refused {
                    code: Some(code),
                    message,
                },
            }
        }
        etcd_client::Error::TransportError(_)
        | etcd_client::Error::IoError(_)
        | etcd_client::Error::WatchError(_) => Failure::Unavailable(err.to_string()),
        other => Failure::Refused {
            code: None,
            message: other.to_string(),
        },
    }
}

/// `message`, followed by what the causes of `err` add to it ("tcp connect error:
/// Connection refused (os error 111)").
fn with_causes(message: &str, err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = message.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Whether the error is a refused connection: the request never left.
fn connection_refused(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(err);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return true;
        }
        source = err.source();
    }
    false
}

/// The TLS settings the configuration asks for, if any.
fn tls_options(config: &EtcdConfig) -> Result<Option<TlsOptions>, KvError> {
    if config.ca.is_none() && config.cert.is_none() && config.key.is_none() {
        return Ok(None);
    }
    let Some(ca) = &config.ca else {
        return Err(KvError::Backend(
            "etcd TLS needs the CA certificate that signed the members' certificates".to_string(),
        ));
    };
    let mut tls = TlsOptions::new().ca_certificate(Certificate::from_pem(read_pem(ca, "CA")?));
    match (&config.cert, &config.key) {
        (Some(cert), Some(key)) => {
            tls = tls.identity(Identity::from_pem(
                read_pem(cert, "client certificate")?,
                read_pem(key, "client key")?,
            ));
        }
        (None, None) => {}
        _ => {
            return Err(KvError::Backend(
                "an etcd client certificate needs its key, and a key its certificate".to_string(),
            ));
        }
    }
    Ok(Some(tls))
}

fn read_pem(path: &Path, what: &str) -> Result<Vec<u8>, KvError> {
    std::fs::read(path).map_err(|err| {
        KvError::Backend(format!("reading the etcd {what} {}: {err}", path.display()))
    })
}

/// The smallest key after every key that starts with `prefix` (empty: no bound, which etcd
/// spells "\0"), as etcd computes a prefix's range end.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// An etcd revision as ours (etcd's are never negative).
fn revision(etcd: i64) -> Revision {
    u64::try_from(etcd).unwrap_or(0)
}

fn etcd_revision(revision: Revision) -> Result<i64, KvError> {
    i64::try_from(revision)
        .map_err(|_| KvError::Backend(format!("revision {revision} is beyond etcd's range")))
}

fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> Result<Revision, KvError> {
    header
        .map(|header| revision(header.revision()))
        .ok_or_else(|| KvError::Backend("etcd answered without a header".to_string()))
}

#[async_trait]
impl Kv for EtcdKv {
    async fn get(&self, key: &str) -> Result<(Revision, Option<KeyValue>), KvError> {
        let full = self.full_key(key);
        let answer = self
            .call("get", Resend::Always, |member| {
                let full = full.clone();
                async move { member.kv.clone().get(full, None).await }
            })
            .await?;
        let revision = header_revision(answer.header())?;
        let kv = match answer.kvs().first() {
            Some(kv) => Some(self.key_value(kv)?),
            None => None,
        };
        Ok((revision, kv))
    }

    async fn range(&self, prefix: &str, min_mod_revision: Revision) -> Result<Range, KvError> {
        self.read_range(prefix, min_mod_revision, None).await
    }

    async fn range_oldest(
        &self,
        prefix: &str,
        min_mod_revision: Revision,
        limit: usize,
    ) -> Result<Range, KvError> {
        self.read_range(prefix, min_mod_revision, Some(limit)).await
    }

    async fn txn(&self, txn: Txn) -> Result<TxnOutcome, KvError> {
        let mut compares = Vec::with_capacity(txn.compares.len());
        for compare in &txn.compares {
            let Compare::ModRevision { key, revision } = compare;
            // A key that does not exist has mod revision 0 in etcd's compares too.
            compares.push(etcd_client::Compare::mod_revision(
                self.full_key(key),
                CompareOp::Equal,
                etcd_revision(*revision)?,
            ));
        }
        let ops = txn
            .ops
            .iter()
            .map(|op| match op {
                Op::Put { key, value, lease } => TxnOp::put(
                    self.full_key(key),
                    value.clone(),
                    (*lease != 0).then(|| PutOptions::new().with_lease(*lease)),
                ),
                Op::Delete { key } => TxnOp::delete(self.full_key(key), None),
                Op::DeletePrefix { prefix } => {
                    let (start, end) = self.prefix_range(prefix);
                    TxnOp::delete(start, Some(DeleteOptions::new().with_range(end)))
                }
            })
            .collect::<Vec<_>>();
        let request = etcd_client::Txn::new().when(compares).and_then(ops);
        let answer = self
            .call("transaction", Resend::IfUnsent, |member| {
                let request = request.clone();
                async move { member.kv.clone().txn(request).await }
            })
            .await?;
        if !answer.succeeded() {
            return Ok(TxnOutcome::Conflict);
        }
        Ok(TxnOutcome::Committed(header_revision(answer.header())?))
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, KvError> {
        let (start, end) = self.prefix_range(prefix);
        let start_revision = etcd_revision(after.saturating_add(1))?;
        let (stream, created) = self
            .call("watch", Resend::Always, |member| {
                let (start, end) = (start.clone(), end.clone());
                async move {
                    let options = WatchOptions::new()
                        .with_range(end)
                        .with_start_revision(start_revision);
                    let mut stream = member.watch.clone().watch(start, Some(options)).await?;
                    // The watch exists once etcd says it was created.
                    let created = stream.message().await?;
                    Ok((stream, created))
                }
            })
            .await?;
        let mut state = WatchState {
            stream,
            prefix: self.prefix.clone(),
            pending: std::collections::VecDeque::new(),
            done: false,
        };
        match created {
            Some(response) => state.take(&response),
            None => state.fail(KvError::Unavailable(
                "the etcd watch stream ended as it was created".to_string(),
            )),
        }
        Ok(Box::pin(futures_util::stream::unfold(state, next_event)))
    }

    async fn compact(&self, revision: Revision) -> Result<(), KvError> {
        let target = etcd_revision(revision)?;
        let answer = self
            .call("compaction", Resend::Always, |member| async move {
                keep_refusal(member.kv.clone().compact(target, None).await)
            })
            .await?;
        match answer {
            Ok(_) => Ok(()),
            // Compacted already (at this revision or a later one): the history is gone.
            Err((Some(code::OUT_OF_RANGE), message)) if message.contains("been compacted") => {
                Ok(())
            }
            Err((_, message)) => Err(KvError::Backend(format!(
                "etcd refused to compact at revision {revision}: {message}"
            ))),
        }
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, KvError> {
        // etcd counts in whole seconds: round up, at least 1 (etcd may raise it to its own
        // minimum, a few election timeouts).
        let mut seconds = ttl.as_secs();
        if ttl.subsec_nanos() > 0 {
            seconds = seconds.saturating_add(1);
        }
        let seconds = i64::try_from(seconds.max(1)).unwrap_or(i64::MAX);
        let answer = self
            .call("lease grant", Resend::Always, |member| async move {
                member.lease.clone().grant(seconds, None).await
            })
            .await?;
        if !answer.error().is_empty() {
            return Err(KvError::Backend(format!(
                "etcd refused a lease: {}",
                answer.error()
            )));
        }
        Ok(answer.id())
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<(), KvError> {
        let answer = self
            .call("lease keep-alive", Resend::Always, |member| async move {
                // One renewal: the stream is dropped once it has answered.
                keep_refusal(member.lease.clone().keep_alive(lease).await.map(|_| ()))
            })
            .await?;
        answer.map_err(|(_, message)| {
            KvError::Backend(format!("lease {lease} has ended ({message})"))
        })
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<(), KvError> {
        let answer = self
            .call("lease revoke", Resend::Always, |member| async move {
                keep_refusal(member.lease.clone().revoke(lease).await)
            })
            .await?;
        match answer {
            Ok(_) => Ok(()),
            // Ended already: its keys are gone, as asked.
            Err((Some(code::NOT_FOUND), _)) => Ok(()),
            Err((_, message)) => Err(KvError::Backend(format!(
                "etcd refused to revoke lease {lease}: {message}"
            ))),
        }
    }

    fn describe(&self) -> String {
        format!("etcd {} (prefix {})", self.endpoints, self.prefix)
    }
}

/// A watch: etcd's stream, and the events of its last response not yet delivered.
struct WatchState {
    stream: etcd_client::WatchStream,
    prefix: String,
    pending: std::collections::VecDeque<Result<WatchEvent, KvError>>,
    done: bool,
}

impl WatchState {
    /// Queues what one response says: its events, or why the watch ended.
    fn take(&mut self, response: &WatchResponse) {
        if response.compact_revision() != 0 {
            return self.fail(KvError::Compacted {
                compact_revision: revision(response.compact_revision()),
            });
        }
        for event in response.events() {
            let Some(kv) = event.kv() else {
                return self.fail(KvError::Backend(
                    "etcd sent a watch event without its key".to_string(),
                ));
            };
            let key = match kv
                .key()
                .strip_prefix(self.prefix.as_bytes())
                .map(|key| String::from_utf8(key.to_vec()))
            {
                Some(Ok(key)) => key,
                _ => {
                    return self.fail(KvError::Backend(format!(
                        "etcd sent a watch event for a key outside the prefix {} or not UTF-8: {}",
                        self.prefix,
                        String::from_utf8_lossy(kv.key())
                    )));
                }
            };
            let kind = match event.event_type() {
                EventType::Put => WatchKind::Put(kv.value().to_vec()),
                EventType::Delete => WatchKind::Delete,
            };
            self.pending.push_back(Ok(WatchEvent {
                revision: revision(kv.mod_revision()),
                key,
                kind,
            }));
        }
        if response.canceled() {
            let reason = response.cancel_reason();
            self.fail(KvError::Unavailable(if reason.is_empty() {
                "etcd cancelled the watch".to_string()
            } else {
                format!("etcd cancelled the watch: {reason}")
            }));
        }
    }

    /// Ends the watch with `err`, after what is queued.
    fn fail(&mut self, err: KvError) {
        self.pending.push_back(Err(err));
        self.done = true;
    }
}

async fn next_event(mut state: WatchState) -> Option<(Result<WatchEvent, KvError>, WatchState)> {
    loop {
        if let Some(item) = state.pending.pop_front() {
            return Some((item, state));
        }
        if state.done {
            return None;
        }
        match state.stream.message().await {
            Ok(Some(response)) => state.take(&response),
            Ok(None) => state.fail(KvError::Unavailable(
                "the etcd watch stream ended".to_string(),
            )),
            Err(err) => state.fail(KvError::Unavailable(format!(
                "the etcd watch stream broke: {err}"
            ))),
        }
    }
}

impl EtcdKv {
    /// A range, sorted by key, or with `limit`: the oldest `limit` keys by mod revision.
    async fn read_range(
        &self,
        prefix: &str,
        min_mod_revision: Revision,
        limit: Option<usize>,
    ) -> Result<Range, KvError> {
        let (start, end) = self.prefix_range(prefix);
        let min = etcd_revision(min_mod_revision)?;
        let answer = self
            .call("range", Resend::Always, |member| {
                let (start, end) = (start.clone(), end.clone());
                async move {
                    let mut options = GetOptions::new().with_range(end).with_min_mod_revision(min);
                    if let Some(limit) = limit {
                        options = options
                            .with_sort(SortTarget::Mod, SortOrder::Ascend)
                            .with_limit(i64::try_from(limit).unwrap_or(i64::MAX));
                    }
                    member.kv.clone().get(start, Some(options)).await
                }
            })
            .await?;
        let revision = header_revision(answer.header())?;
        let kvs = answer
            .kvs()
            .iter()
            .map(|kv| self.key_value(kv))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Range { revision, kvs })
    }
}
