//! `GET /api/realtime?minutes=N`.

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;

use crate::view::RealtimeHandle;

pub const DEFAULT_MINUTES: u32 = 60;
pub const MAX_MINUTES: u32 = 1440;

#[derive(Debug, Deserialize)]
struct Params {
    minutes: Option<String>,
}

pub fn router(handle: RealtimeHandle) -> Router {
    Router::new()
        .route("/api/realtime", get(realtime))
        .with_state(handle)
}

async fn realtime(State(handle): State<RealtimeHandle>, Query(params): Query<Params>) -> Response {
    let minutes = match params.minutes.as_deref() {
        None => DEFAULT_MINUTES,
        Some(text) => match text.parse::<u32>() {
            Ok(n) if (1..=MAX_MINUTES).contains(&n) => n,
            _ => {
                return (
                    StatusCode::BAD_REQUEST,
                    axum::Json(json!({
                        "error": format!("minutes must be a whole number from 1 to {MAX_MINUTES}, not {text:?}")
                    })),
                )
                    .into_response();
            }
        },
    };
    let now = chrono::Utc::now().timestamp_micros();
    axum::Json(handle.report(minutes, now)).into_response()
}
