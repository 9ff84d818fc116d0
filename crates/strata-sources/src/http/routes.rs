//! The HTTP surface of the collector role.

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use strata_core::event::EventType;

use super::Collector;
use super::ingest::{Endpoint, handle};

pub fn router(collector: Collector) -> Router {
    let single = |t: EventType| {
        post(
            move |State(c): State<Collector>, headers: HeaderMap, body: Body| {
                handle(c, Endpoint::Single(t), headers, body)
            },
        )
        .options(preflight)
    };
    let batch = || {
        post(
            |State(c): State<Collector>, headers: HeaderMap, body: Body| {
                handle(c, Endpoint::Batch, headers, body)
            },
        )
        .options(preflight)
    };
    let ingest = Router::new()
        .route("/v1/track", single(EventType::Track))
        .route("/v1/identify", single(EventType::Identify))
        .route("/v1/page", single(EventType::Page))
        .route("/v1/screen", single(EventType::Screen))
        .route("/v1/group", single(EventType::Group))
        .route("/v1/alias", single(EventType::Alias))
        .route("/v1/batch", batch())
        // Segment's historical-import endpoint takes the batch shape.
        .route("/v1/import", batch())
        // Browsers post from other origins (analytics.js). Nothing else is
        // for other origins' pages to read: /metrics and the rest keep the
        // browser's same-origin rule.
        .layer(axum::middleware::map_response(allow_any_origin));
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics_text))
        .merge(ingest)
        // The collector enforces its own, configurable limit while streaming.
        .layer(DefaultBodyLimit::disable())
        .with_state(collector)
}

async fn ready(State(collector): State<Collector>) -> Response {
    if collector.is_ready() {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response()
    }
}

async fn metrics_text() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::prometheus::render(),
    )
        .into_response()
}

async fn preflight() -> Response {
    (
        StatusCode::NO_CONTENT,
        [
            (header::ACCESS_CONTROL_ALLOW_METHODS, "POST, OPTIONS"),
            (
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                "Content-Type, Content-Encoding, Authorization",
            ),
            (header::ACCESS_CONTROL_MAX_AGE, "86400"),
        ],
    )
        .into_response()
}

async fn allow_any_origin(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        header::HeaderValue::from_static("*"),
    );
    response
}
