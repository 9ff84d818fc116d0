//! `GET /api/runs`: the model runs report of `strata status --json`, per
//! model and partition, optionally narrowed to one model or one state.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use strata_core::Config;
use strata_orchestrator::RunStore;

#[derive(Clone)]
struct Runs {
    config: Arc<Config>,
    store: RunStore,
}

#[derive(Debug, Deserialize)]
struct Filter {
    model: Option<String>,
    state: Option<String>,
}

pub fn router(config: Config, store: RunStore) -> Router {
    Router::new()
        .route("/api/runs", get(runs))
        .with_state(Runs {
            config: Arc::new(config),
            store,
        })
}

async fn runs(State(runs): State<Runs>, Query(filter): Query<Filter>) -> Response {
    let mut report = match crate::commands::status::runs_report(&runs.config, &runs.store).await {
        Ok(report) => report,
        Err(e) => {
            let body = serde_json::json!({ "error": format!("run store unavailable: {e}") });
            return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
        }
    };
    if let Some(model) = &filter.model {
        report.models.retain(|m| &m.model == model);
        if report.models.is_empty() {
            let body = serde_json::json!({ "error": format!("unknown model {model:?}") });
            return (StatusCode::NOT_FOUND, Json(body)).into_response();
        }
    }
    if let Some(state) = &filter.state {
        for m in &mut report.models {
            m.partitions.retain(|p| p.state.as_str() == state);
        }
    }
    Json(report).into_response()
}
