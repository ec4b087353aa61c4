//! Readiness without a health check: a replica of a service that serves a port (published
//! through the proxy, or behind its VIP) is ready once it accepts connections on that port,
//! not merely once its container runs. Until then its task counts as starting for this pass,
//! so that neither the proxies nor a rolling update treat it as ready.
//!
//! The probe is a TCP connect from the daemon to the container's address. A refused
//! connection means the replica is reachable and not listening yet: probe again soon. A
//! probe that cannot tell (a timeout, an unreachable network) leaves the replica ready, as
//! it was before the probe existed: the daemon must never hold a rollout on a network it
//! cannot see into.

use std::collections::HashSet;
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use composure_compose::model::{Exposed, Service, parse_expose};
use composure_core::{DesiredState, Health, TaskId, TaskState};

use super::Controller;
use super::observe::container_of;
use super::pass::Work;

/// How long a connect may take before the probe gives up telling.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(200);
/// How soon a replica that refused is probed again.
const RETRY_MS: u64 = 200;

/// The port a replica of `service` must accept connections on to be ready: its first TCP
/// `ports` target, else its first `expose` entry. `None`: it serves no port.
pub(super) fn served_port(service: &Service) -> Option<u16> {
    let published = service
        .ports
        .iter()
        .find(|p| p.protocol.eq_ignore_ascii_case("tcp"))
        .map(|p| p.target);
    published.or_else(|| {
        service
            .expose
            .iter()
            .filter_map(|entry| parse_expose(entry))
            .find(Exposed::is_tcp)
            .map(|e| e.first)
    })
}

/// What one probe found.
#[derive(Debug, PartialEq, Eq)]
enum Probe {
    Accepts,
    Refused,
    /// Timed out or unreachable: the daemon cannot tell.
    Unknown,
}

async fn probe(addr: SocketAddr) -> Probe {
    match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Probe::Accepts,
        Ok(Err(e)) if e.kind() == ErrorKind::ConnectionRefused => Probe::Refused,
        Ok(Err(_)) | Err(_) => Probe::Unknown,
    }
}

impl Controller {
    /// Marks as starting, for this pass, the running replicas without a health check that
    /// do not accept connections on their served port yet.
    pub(super) async fn probe_accepting(&mut self, work: &mut Work) {
        let live: HashSet<TaskId> = work
            .tasks
            .iter()
            .filter(|t| t.state == TaskState::Running)
            .map(|t| t.id.clone())
            .collect();
        self.accepting.retain(|id| live.contains(id));
        for index in 0..work.tasks.len() {
            let task = &work.tasks[index];
            let waiting = task.desired == DesiredState::Running
                && task.state == TaskState::Running
                && task.health == Health::None
                && !self.accepting.contains(&task.id);
            if !waiting {
                continue;
            }
            let checked = work
                .specs
                .get(&task.service)
                .is_none_or(|s| s.has_healthcheck);
            let port = work
                .project
                .services
                .get(&task.service)
                .and_then(served_port);
            let ip = container_of(task, &work.containers)
                .and_then(|c| c.addresses.values().find_map(|a| a.parse::<IpAddr>().ok()));
            let (Some(port), Some(ip), false) = (port, ip, checked) else {
                self.accepting.insert(task.id.clone());
                continue;
            };
            match probe(SocketAddr::new(ip, port)).await {
                Probe::Accepts | Probe::Unknown => {
                    self.accepting.insert(task.id.clone());
                }
                Probe::Refused => {
                    work.tasks[index].health = Health::Starting;
                    work.wake(work.now + RETRY_MS);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use composure_compose::model::project_from_json;

    use super::*;

    fn service(json: serde_json::Value) -> Service {
        let project = project_from_json(serde_json::json!({"services": {"s": json}})).unwrap();
        project.services["s"].clone()
    }

    #[test]
    fn the_served_port_is_the_first_tcp_port_declared() {
        let s = service(serde_json::json!({"image": "x",
            "ports": [{"target": 53, "protocol": "udp"}, {"target": 8080, "protocol": "tcp"}],
            "expose": ["9000"]}));
        assert_eq!(served_port(&s), Some(8080));
        let s = service(serde_json::json!({"image": "x", "expose": ["53/udp", "7000-7002"]}));
        assert_eq!(served_port(&s), Some(7000));
        let s = service(serde_json::json!({"image": "x"}));
        assert_eq!(served_port(&s), None);
    }

    #[tokio::test]
    async fn a_probe_tells_accepting_from_refused() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        assert_eq!(probe(addr).await, Probe::Accepts);
        drop(listener);
        assert_eq!(probe(addr).await, Probe::Refused);
    }
}
