//! Composure's HTTP API as the CLI and the daemon share it: the wire types ([`types`]), the
//! NDJSON framing of the streaming endpoints ([`ndjson`]) and a [`Client`] over the
//! daemon's Unix socket.
//!
//! Endpoints (all JSON; errors are `{"error": "..."}` with 400/404/409/500/503):
//!
//! | call | answer |
//! |---|---|
//! | `GET /v1/info` | [`Info`] (503 when the engine is unavailable) |
//! | `PUT /v1/projects/{name}` [`PutProject`] | [`PutProjectResponse`] |
//! | `GET /v1/projects` | `[`[`ProjectSummary`]`]` |
//! | `GET /v1/projects/{name}` | [`ProjectStatus`] |
//! | `DELETE /v1/projects/{name}?volumes=` | 202, then the daemon removes it |
//! | `POST /v1/projects/{name}/scale` [`ScaleRequest`] | [`RevisionResponse`] |
//! | `POST /v1/projects/{name}/restart` [`RestartRequest`] | [`RevisionResponse`] |
//! | `GET /v1/projects/{name}/logs?service=&follow=&tail=&task=` | NDJSON of [`LogEntry`] |
//! | `GET /v1/projects/{name}/services/{service}/rollout` | [`RolloutView`] (404: none yet) |
//! | `GET /v1/projects/{name}/services/{service}/history` | [`RolloutHistory`] |
//! | `POST /v1/projects/{name}/services/{service}/undo` [`UndoRequest`] | [`RevisionResponse`] |
//! | `GET /v1/events?project=&since=&follow=` | NDJSON of [`Event`] |

pub mod client;
pub mod ndjson;
pub mod types;

pub use client::{ApiStream, Client, ClientError};
pub use types::*;
