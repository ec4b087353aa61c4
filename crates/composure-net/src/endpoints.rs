//! The ready backends of a service, as the daemon publishes them.

use std::net::SocketAddr;

use composure_core::TaskId;
use tokio::sync::watch;

/// One ready replica: the task that runs it and the address the proxy connects to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint {
    pub task: TaskId,
    pub addr: SocketAddr,
}

impl Endpoint {
    pub fn new(task: impl Into<String>, addr: SocketAddr) -> Self {
        Endpoint {
            task: TaskId(task.into()),
            addr,
        }
    }
}

/// The set of ready replicas of one service. The daemon owns the sending half of a
/// [`watch`] channel of these and sends a whole new set whenever a task becomes ready or
/// leaves; the proxy reads the newest set at each new connection or request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Endpoints(pub Vec<Endpoint>);

impl Endpoints {
    pub fn new(endpoints: impl IntoIterator<Item = Endpoint>) -> Self {
        Endpoints(endpoints.into_iter().collect())
    }

    pub fn iter(&self) -> impl Iterator<Item = &Endpoint> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A channel that starts with this set: the daemon keeps the sender, an
    /// [`Upstream`](crate::Upstream) takes the receiver.
    pub fn channel(self) -> (watch::Sender<Endpoints>, watch::Receiver<Endpoints>) {
        watch::channel(self)
    }
}

impl FromIterator<Endpoint> for Endpoints {
    fn from_iter<I: IntoIterator<Item = Endpoint>>(iter: I) -> Self {
        Endpoints::new(iter)
    }
}
