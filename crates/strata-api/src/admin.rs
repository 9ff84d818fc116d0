//! Admin actions: queue a backfill or one run, and read-only SQL. Each needs
//! the admin token.

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderMap, StatusCode};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use strata_lake::SqlEngine;
use strata_orchestrator::backfill::{self, Request};
use strata_orchestrator::dag::{Graph, funnel_days};

use crate::Api;
use crate::auth::require_admin;
use crate::error::{Error, Result};

/// Rows `POST /api/sql` answers at most; the rest is left out and said so.
pub const MAX_SQL_ROWS: usize = 10_000;

/// Days one `POST /api/backfill` may cover: a year, leap day included. A
/// request from 1900 once queued 417,206 runs; `strata backfill` on the
/// server has no such cap.
pub const MAX_BACKFILL_DAYS: i64 = 366;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackfillBody {
    model: String,
    from: String,
    to: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunBody {
    model: String,
    date: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Queued {
    backfill_id: String,
    resumed: bool,
    runs: usize,
}

fn authorize(api: &Api, headers: &HeaderMap) -> Result<()> {
    require_admin(api.inner.config.admin_token.as_deref(), headers)
}

/// A JSON body, or a 400 that says what is wrong with it.
fn body<T>(body: std::result::Result<Json<T>, JsonRejection>) -> Result<T> {
    body.map(|Json(b)| b)
        .map_err(|e| Error::BadRequest(format!("bad request body: {}", e.body_text())))
}

/// A `YYYY-MM-DD` date from 1970-01-01 (no event is older) to tomorrow
/// (UTC; a client a few hours ahead may ask for its today).
fn date(name: &str, text: &str) -> Result<NaiveDate> {
    let day = NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
        .map_err(|_| Error::BadRequest(format!("{name}: {text:?} is not a YYYY-MM-DD date")))?;
    let tomorrow = chrono::Utc::now().date_naive() + chrono::Days::new(1);
    if day < chrono::DateTime::UNIX_EPOCH.date_naive() {
        return Err(Error::BadRequest(format!(
            "{name}: {day} is before 1970-01-01; there is no data that old"
        )));
    }
    if day > tomorrow {
        return Err(Error::BadRequest(format!(
            "{name}: {day} is after tomorrow ({tomorrow}); there is no data for it yet"
        )));
    }
    Ok(day)
}

async fn queue(api: &Api, request: Request) -> Result<(StatusCode, Json<Queued>)> {
    let store = api.inner.store.as_ref().ok_or_else(|| {
        Error::Unavailable("this process has no run store to queue runs in".into())
    })?;
    let config = &api.inner.config;
    let started = backfill::queue(
        store,
        &Graph::new(funnel_days(config)),
        config.orchestrator.max_attempts,
        &request,
    )
    .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Queued {
            backfill_id: started.id,
            resumed: started.resumed,
            runs: started.runs,
        }),
    ))
}

/// `POST /api/backfill`: queues what `strata backfill` would build.
pub async fn backfill(
    State(api): State<Api>,
    headers: HeaderMap,
    request: std::result::Result<Json<BackfillBody>, JsonRejection>,
) -> Result<(StatusCode, Json<Queued>)> {
    authorize(&api, &headers)?;
    let b = body(request)?;
    let (from, to) = (date("from", &b.from)?, date("to", &b.to)?);
    let days = (to - from).num_days() + 1;
    if days > MAX_BACKFILL_DAYS {
        return Err(Error::BadRequest(format!(
            "{from} to {to} is {days} days; POST /api/backfill takes at most {MAX_BACKFILL_DAYS} days per request: \
             split the range, or run `strata backfill` on the server"
        )));
    }
    queue(&api, Request::backfill(&b.model, from, to)?).await
}

/// `POST /api/runs`: queues one partition, like `strata run`.
pub async fn run(
    State(api): State<Api>,
    headers: HeaderMap,
    request: std::result::Result<Json<RunBody>, JsonRejection>,
) -> Result<(StatusCode, Json<Queued>)> {
    authorize(&api, &headers)?;
    let b = body(request)?;
    let day = b.date.as_deref().map(|d| date("date", d)).transpose()?;
    queue(&api, Request::run(&b.model, day)?).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlBody {
    query: String,
}

#[derive(Debug, Serialize)]
pub struct SqlAnswer {
    columns: Vec<String>,
    rows: Vec<Vec<serde_json::Value>>,
    truncated: bool,
}

/// `POST /api/sql`: one read-only statement over every table.
pub async fn sql(
    State(api): State<Api>,
    headers: HeaderMap,
    request: std::result::Result<Json<SqlBody>, JsonRejection>,
) -> Result<Json<SqlAnswer>> {
    authorize(&api, &headers)?;
    let b = body(request)?;
    let limits = &api.inner.config.sql;
    let Ok(_slot) = api.inner.sql_slots.clone().try_acquire_owned() else {
        return Err(Error::Busy(format!(
            "{} queries are running, as many as sql.max_concurrent_queries allows; retry in a moment",
            limits.max_concurrent_queries
        )));
    };
    let engine = SqlEngine::open_with(&api.inner.lake, limits).await?;
    let answer = engine.query_rows(&b.query, MAX_SQL_ROWS).await?;
    let (columns, rows) = strata_lake::query::json_rows(&answer.batches, MAX_SQL_ROWS)?;
    Ok(Json(SqlAnswer {
        columns,
        rows,
        truncated: answer.truncated,
    }))
}
