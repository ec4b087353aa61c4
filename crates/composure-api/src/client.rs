//! A client of the daemon's API over its Unix socket.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyperlocal::UnixConnector;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::ndjson::{self, DecodeError};
use crate::types::{
    DeleteQuery, ErrorBody, Event, EventsQuery, GpusView, ImageProgress, ImagesRequest, Info,
    LogEntry, LogsQuery, NodeUpdate, NodeView, PlacementPreview, ProjectStatus, ProjectSummary,
    PutProject, PutProjectResponse, PutQuery, RestartRequest, RevisionResponse, RolloutHistory,
    RolloutView, ScaleRequest, UndoRequest,
};

/// Why a call to the daemon failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the Composure daemon at {}: {source} (is `composure daemon` running?)", socket.display())]
    Connect {
        socket: PathBuf,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    /// The socket exists but this user may not use it.
    #[error("permission denied on the Composure daemon's socket {}: run as root, or join the socket's group (the daemon's --socket-group), or point --host at another daemon", socket.display())]
    Denied {
        socket: PathBuf,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    /// The daemon answered with an error; `message` is its `{error}` text.
    #[error("{message}")]
    Api { status: u16, message: String },
    #[error("talking to the Composure daemon failed")]
    Http(#[source] hyper_util::client::legacy::Error),
    #[error("reading the daemon's answer failed")]
    Body(#[source] hyper::Error),
    #[error("the daemon's answer is not what this client expects")]
    Decode(#[source] serde_json::Error),
    #[error("cannot build the request: {0}")]
    Request(String),
}

impl ClientError {
    /// The HTTP status of an error answer from the daemon.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether the daemon said there is no such project.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }
}

/// A stream of values from the daemon (logs or events). It ends when the daemon ends it.
pub type ApiStream<T> = BoxStream<'static, Result<T, ClientError>>;

/// The daemon's API, one method per endpoint. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    socket: PathBuf,
    http: HttpClient<UnixConnector, Full<Bytes>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

/// Below the daemon's idle timeout (`HEADER_TIMEOUT` of its API server).
const IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

impl Client {
    /// A client of the daemon listening on `socket`. Connects on the first call.
    pub fn new(socket: impl Into<PathBuf>) -> Client {
        Client {
            socket: socket.into(),
            // Idle connections are dropped before the daemon closes them (it closes a
            // connection idle for 10 s), so that a request never goes out on one the
            // daemon is closing.
            http: HttpClient::builder(TokioExecutor::new())
                .pool_timer(TokioTimer::new())
                .pool_idle_timeout(IDLE_TIMEOUT)
                .build(UnixConnector),
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `GET /v1/info`.
    pub async fn info(&self) -> Result<Info, ClientError> {
        self.call(Method::GET, "/v1/info".to_string(), None::<&()>)
            .await
    }

    /// `PUT /v1/projects/{name}`: sets the desired state of a project.
    pub async fn put_project(
        &self,
        name: &str,
        body: &PutProject,
    ) -> Result<PutProjectResponse, ClientError> {
        self.call(Method::PUT, project_path(name, ""), Some(body))
            .await
    }

    /// `PUT /v1/projects/{name}?merge=true`: sets the desired state of the body's services
    /// only, keeping the project's others (`up SERVICE...`).
    pub async fn put_services(
        &self,
        name: &str,
        body: &PutProject,
    ) -> Result<PutProjectResponse, ClientError> {
        let path = format!(
            "{}?{}",
            project_path(name, ""),
            query_string(&PutQuery { merge: true })?
        );
        self.call(Method::PUT, path, Some(body)).await
    }

    /// `POST /v1/projects/{name}/images`: the image phase (pull, build), streamed.
    pub async fn prepare_images(
        &self,
        name: &str,
        request: &ImagesRequest,
    ) -> Result<ApiStream<ImageProgress>, ClientError> {
        self.stream_with(Method::POST, project_path(name, "/images"), Some(request))
            .await
    }

    /// `POST /v1/projects/{name}/placement`: where the project would run (nothing is stored).
    pub async fn placement_preview(
        &self,
        name: &str,
        body: &PutProject,
    ) -> Result<PlacementPreview, ClientError> {
        self.call(Method::POST, project_path(name, "/placement"), Some(body))
            .await
    }

    /// `GET /v1/projects`.
    pub async fn projects(&self) -> Result<Vec<ProjectSummary>, ClientError> {
        self.call(Method::GET, "/v1/projects".to_string(), None::<&()>)
            .await
    }

    /// `GET /v1/projects/{name}`; a missing project is an error with status 404.
    pub async fn project(&self, name: &str) -> Result<ProjectStatus, ClientError> {
        self.call(Method::GET, project_path(name, ""), None::<&()>)
            .await
    }

    /// `DELETE /v1/projects/{name}`: the daemon removes the project in the background.
    pub async fn delete_project(&self, name: &str, volumes: bool) -> Result<(), ClientError> {
        let query = query_string(&DeleteQuery { volumes })?;
        let path = format!("{}?{query}", project_path(name, ""));
        let response = self.send(Method::DELETE, path, None::<&()>).await?;
        let body = read_body(response).await?;
        drop(body);
        Ok(())
    }

    /// `POST /v1/projects/{name}/scale`.
    pub async fn scale(
        &self,
        name: &str,
        request: &ScaleRequest,
    ) -> Result<RevisionResponse, ClientError> {
        self.call(Method::POST, project_path(name, "/scale"), Some(request))
            .await
    }

    /// `POST /v1/projects/{name}/restart`.
    pub async fn restart(
        &self,
        name: &str,
        request: &RestartRequest,
    ) -> Result<RevisionResponse, ClientError> {
        self.call(Method::POST, project_path(name, "/restart"), Some(request))
            .await
    }

    /// `GET /v1/projects/{name}/services/{service}/rollout`: the service's latest rollout;
    /// 404 when it never had one.
    pub async fn rollout(&self, name: &str, service: &str) -> Result<RolloutView, ClientError> {
        self.call(
            Method::GET,
            service_path(name, service, "/rollout"),
            None::<&()>,
        )
        .await
    }

    /// `GET /v1/projects/{name}/services/{service}/history`: the service's versions.
    pub async fn rollout_history(
        &self,
        name: &str,
        service: &str,
    ) -> Result<RolloutHistory, ClientError> {
        self.call(
            Method::GET,
            service_path(name, service, "/history"),
            None::<&()>,
        )
        .await
    }

    /// `POST /v1/projects/{name}/services/{service}/undo`: back to an earlier version,
    /// rolling through the slots.
    pub async fn rollout_undo(
        &self,
        name: &str,
        service: &str,
        request: &UndoRequest,
    ) -> Result<RevisionResponse, ClientError> {
        self.call(
            Method::POST,
            service_path(name, service, "/undo"),
            Some(request),
        )
        .await
    }

    /// `GET /v1/projects/{name}/logs`: the output of the project's containers, line by line.
    pub async fn logs(
        &self,
        name: &str,
        query: &LogsQuery,
    ) -> Result<ApiStream<LogEntry>, ClientError> {
        let path = format!("{}?{}", project_path(name, "/logs"), query_string(query)?);
        self.stream(path).await
    }

    /// `GET /v1/events`: what the daemon did and saw, from `since` on.
    pub async fn events(&self, query: &EventsQuery) -> Result<ApiStream<Event>, ClientError> {
        let path = format!("/v1/events?{}", query_string(query)?);
        self.stream(path).await
    }

    /// `GET /v1/nodes`: every node the cluster knows.
    pub async fn nodes(&self) -> Result<Vec<NodeView>, ClientError> {
        self.call(Method::GET, "/v1/nodes".to_string(), None::<&()>)
            .await
    }

    /// `GET /v1/gpus`: every node's GPUs and who holds them.
    pub async fn gpus(&self) -> Result<GpusView, ClientError> {
        self.call(Method::GET, "/v1/gpus".to_string(), None::<&()>)
            .await
    }

    /// `GET /v1/nodes/{name}`; an unknown node is an error with status 404.
    pub async fn node(&self, name: &str) -> Result<NodeView, ClientError> {
        self.call(Method::GET, node_path(name), None::<&()>).await
    }

    /// `PATCH /v1/nodes/{name}`: labels and availability.
    pub async fn update_node(
        &self,
        name: &str,
        update: &NodeUpdate,
    ) -> Result<NodeView, ClientError> {
        self.call(Method::PATCH, node_path(name), Some(update))
            .await
    }

    /// `DELETE /v1/nodes/{name}`: forgets a node that is down and runs nothing.
    pub async fn remove_node(&self, name: &str) -> Result<(), ClientError> {
        let response = self
            .send(Method::DELETE, node_path(name), None::<&()>)
            .await?;
        drop(read_body(response).await?);
        Ok(())
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: String,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let response = self.send(method, path, body).await?;
        let bytes = read_body(response).await?;
        serde_json::from_slice(&bytes).map_err(ClientError::Decode)
    }

    async fn stream<T: DeserializeOwned + Send + 'static>(
        &self,
        path: String,
    ) -> Result<ApiStream<T>, ClientError> {
        self.stream_with(Method::GET, path, None::<&()>).await
    }

    async fn stream_with<B: Serialize, T: DeserializeOwned + Send + 'static>(
        &self,
        method: Method,
        path: String,
        body: Option<&B>,
    ) -> Result<ApiStream<T>, ClientError> {
        let response = self.send(method, path, body).await?;
        let response = check_status(response).await?;
        let chunks = response.into_body().into_data_stream();
        let items = ndjson::decode(chunks).map(|item| {
            item.map_err(|err| match err {
                DecodeError::Chunk(err) => ClientError::Body(err),
                DecodeError::Json(err) => ClientError::Decode(err),
            })
        });
        Ok(items.boxed())
    }

    async fn send<B: Serialize>(
        &self,
        method: Method,
        path: String,
        body: Option<&B>,
    ) -> Result<Response<Incoming>, ClientError> {
        let uri = unix_uri(&self.socket, &path)?;
        let mut request = Request::builder().method(method).uri(uri);
        let body = match body {
            Some(body) => {
                request = request.header(hyper::header::CONTENT_TYPE, "application/json");
                Bytes::from(serde_json::to_vec(body).map_err(ClientError::Decode)?)
            }
            None => Bytes::new(),
        };
        let request = request
            .body(Full::new(body))
            .map_err(|err| ClientError::Request(err.to_string()))?;
        self.http.request(request).await.map_err(|source| {
            if source.is_connect() && denied(&source) {
                ClientError::Denied {
                    socket: self.socket.clone(),
                    source,
                }
            } else if source.is_connect() {
                ClientError::Connect {
                    socket: self.socket.clone(),
                    source,
                }
            } else {
                ClientError::Http(source)
            }
        })
    }
}

/// The body of a successful answer; an error answer becomes `ClientError::Api`.
async fn read_body(response: Response<Incoming>) -> Result<Bytes, ClientError> {
    let response = check_status(response).await?;
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(ClientError::Body)?;
    Ok(body.to_bytes())
}

async fn check_status(response: Response<Incoming>) -> Result<Response<Incoming>, ClientError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(ClientError::Body)?
        .to_bytes();
    Err(ClientError::Api {
        status: status.as_u16(),
        message: error_message(status, &body),
    })
}

/// The daemon's `{error}` text, or the status in words when the body is something else.
fn error_message(status: StatusCode, body: &[u8]) -> String {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(body) => body.error,
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            if text.is_empty() {
                format!("the daemon answered {status}")
            } else {
                format!("the daemon answered {status}: {text}")
            }
        }
    }
}

fn project_path(name: &str, rest: &str) -> String {
    format!("/v1/projects/{}{rest}", encode_segment(name))
}

/// Whether a connect error was the socket's permissions.
fn denied(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(err);
    while let Some(err) = cause {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::PermissionDenied
        {
            return true;
        }
        cause = err.source();
    }
    false
}

fn node_path(name: &str) -> String {
    format!("/v1/nodes/{}", encode_segment(name))
}

fn service_path(name: &str, service: &str, rest: &str) -> String {
    project_path(
        name,
        &format!("/services/{}{rest}", encode_segment(service)),
    )
}

fn query_string<Q: Serialize>(query: &Q) -> Result<String, ClientError> {
    serde_urlencoded::to_string(query).map_err(|err| ClientError::Request(err.to_string()))
}

/// Percent-encodes everything but the URI's unreserved characters.
fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// The URI hyperlocal's connector understands: the socket path, hex-encoded, as the host.
fn unix_uri(socket: &Path, path: &str) -> Result<Uri, ClientError> {
    let mut host = String::new();
    for byte in socket.as_os_str().as_encoded_bytes() {
        let _ = write!(host, "{byte:02x}");
    }
    format!("unix://{host}:0{path}")
        .parse()
        .map_err(|err: hyper::http::uri::InvalidUri| ClientError::Request(err.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(
            project_path("a b/c", "/logs"),
            "/v1/projects/a%20b%2Fc/logs"
        );
        assert_eq!(project_path("web-1_x.y", ""), "/v1/projects/web-1_x.y");
    }

    #[test]
    fn the_socket_path_is_the_hex_host() {
        let uri = unix_uri(Path::new("/run/c.sock"), "/v1/info?x=1").unwrap();
        assert_eq!(uri.scheme_str(), Some("unix"));
        assert_eq!(uri.host(), Some("2f72756e2f632e736f636b"));
        assert_eq!(uri.path_and_query().unwrap().as_str(), "/v1/info?x=1");
    }

    #[test]
    fn error_bodies_give_their_text() {
        let message = error_message(StatusCode::NOT_FOUND, br#"{"error":"no project `x`"}"#);
        assert_eq!(message, "no project `x`");
        let message = error_message(StatusCode::BAD_GATEWAY, b"");
        assert_eq!(message, "the daemon answered 502 Bad Gateway");
    }

    #[test]
    fn queries_leave_out_unset_fields() {
        let query = LogsQuery {
            service: Some("web".into()),
            follow: true,
            tail: None,
            task: None,
            since: None,
        };
        assert_eq!(query_string(&query).unwrap(), "service=web&follow=true");
    }

    #[tokio::test]
    async fn a_missing_socket_is_a_connect_error() {
        let client = Client::new("/nonexistent/composure-test.sock");
        let err = client.info().await.unwrap_err();
        assert!(matches!(err, ClientError::Connect { .. }), "{err:?}");
        assert!(err.to_string().contains("/nonexistent/composure-test.sock"));
    }
}
