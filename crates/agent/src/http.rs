//! The HTTP side: Prometheus metrics and health probes.
//!
//! - `/metrics`: every metric of the agent in the Prometheus text format;
//! - `/healthz`: 200 while the process serves (liveness);
//! - `/readyz`: 200 once the agent is registered in the metadata store and serving, else 503
//!   (readiness: load balancers send traffic only then).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use shale_log::Log;

#[derive(Clone)]
struct HttpState {
    registry: Arc<Registry>,
    log: Log,
}

/// The router of the HTTP listener.
pub(crate) fn router(registry: Arc<Registry>, log: Log) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(HttpState { registry, log })
}

async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &state.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding metrics failed: {error}\n"),
        )
            .into_response(),
    }
}

async fn ready(State(state): State<HttpState>) -> impl IntoResponse {
    if state.log.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: not registered in the metadata store, or cut off from it\n",
        )
    }
}
