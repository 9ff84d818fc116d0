//! The routes: reads open to anyone who can reach the listen address,
//! admin actions behind the admin token.

use std::ops::RangeInclusive;
use std::time::SystemTime;

use axum::extract::{Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::NaiveDate;
use serde::Deserialize;
use strata_orchestrator::RunState;
use strata_orchestrator::store::Listing;

use crate::error::{Error, Result};
use crate::panels::{active_users, experiments, funnels, pipeline, realtime, retention, sessions};
use crate::range::{DateRange, RangeParams};
use crate::{Api, admin, dashboard};

pub fn router(api: Api) -> Router {
    let config = &api.inner.config;
    let hosts = crate::hosts::AllowedHosts::new(&config.allowed_hosts, config.dashboard_address());
    Router::new()
        .route("/api/realtime", get(realtime))
        .route("/api/active-users", get(active_users))
        .route("/api/retention", get(retention))
        .route("/api/funnels", get(funnels))
        .route("/api/experiments", get(experiments))
        .route("/api/sessions", get(sessions))
        .route("/api/pipeline", get(pipeline))
        .route("/api/runs", get(runs).post(admin::run))
        .route("/api/backfill", post(admin::backfill))
        .route("/api/sql", post(admin::sql))
        .with_state(api)
        .merge(dashboard::router())
        .layer(axum::middleware::from_fn_with_state(
            hosts,
            crate::hosts::check,
        ))
}

async fn realtime(
    State(api): State<Api>,
    Query(params): Query<realtime::Params>,
) -> Result<Json<realtime::Realtime>> {
    let handle = api.inner.realtime.as_ref().ok_or_else(|| {
        Error::NotFound(
            "realtime figures come from the stream role, which this process does not run".into(),
        )
    })?;
    let now = chrono::Utc::now().timestamp_micros();
    Ok(Json(realtime::answer(handle, &params, now)?))
}

/// The range asked for, its open ends anchored at the newest date that has
/// daily active users.
async fn range_of(api: &Api, params: &RangeParams) -> Result<DateRange> {
    let anchor: Option<NaiveDate> = if params.from.is_some() && params.to.is_some() {
        None
    } else {
        let lake = &api.inner.lake;
        api.inner
            .daily_active
            .get(lake)
            .await?
            .and_then(|t| t.last_date())
    };
    DateRange::resolve(params, anchor)
}

async fn active_users(
    State(api): State<Api>,
    Query(params): Query<RangeParams>,
) -> Result<Json<active_users::ActiveUsers>> {
    // The table is its own anchor: one look at its log, not two.
    let table = api.inner.daily_active.get(&api.inner.lake).await?;
    let anchor = table
        .as_deref()
        .and_then(active_users::DailyActive::last_date);
    let range = DateRange::resolve(&params, anchor)?;
    Ok(Json(active_users::answer(table.as_deref(), range)))
}

async fn retention(
    State(api): State<Api>,
    Query(params): Query<RangeParams>,
) -> Result<Json<retention::Retention>> {
    let range = range_of(&api, &params).await?;
    let table = api.inner.retention.get(&api.inner.lake).await?;
    Ok(Json(retention::answer(table.as_deref(), range)))
}

async fn funnels(
    State(api): State<Api>,
    Query(params): Query<RangeParams>,
) -> Result<Json<funnels::Funnels>> {
    let range = range_of(&api, &params).await?;
    let table = api.inner.funnels.get(&api.inner.lake).await?;
    let configured = api.inner.config.effective_funnels();
    Ok(Json(funnels::answer(table.as_deref(), &configured, range)))
}

async fn experiments(State(api): State<Api>) -> Result<Json<experiments::Experiments>> {
    let table = api.inner.experiments.get(&api.inner.lake).await?;
    Ok(Json(experiments::answer(table.as_deref())))
}

async fn sessions(
    State(api): State<Api>,
    Query(params): Query<RangeParams>,
) -> Result<Json<sessions::SessionsAnswer>> {
    let range = range_of(&api, &params).await?;
    let table = api.inner.sessions.get(&api.inner.lake).await?;
    Ok(Json(sessions::answer(table.as_deref(), range)))
}

async fn pipeline(State(api): State<Api>) -> Result<Json<pipeline::Pipeline>> {
    let now = SystemTime::now();
    let runs = match &api.inner.store {
        Some(store) => Some(pipeline::Runs::of(
            runs_report(&api, store, &pipeline::problems()).await?,
        )),
        None => None,
    };
    let tables = api.inner.tables.list(&api.inner.lake, now).await;
    let quarantine = api
        .inner
        .quarantine
        .get(&api.inner.lake)
        .await?
        .map(|q| (*q).clone())
        .unwrap_or_default();
    let too_late = pipeline::TooLate {
        realtime: api.inner.realtime.as_ref().map(|handle| handle.too_late()),
    };
    let sources = api
        .inner
        .sources
        .list(&api.inner.config, &api.inner.lake)
        .await;
    Ok(Json(pipeline::Pipeline {
        generated_at: chrono::DateTime::<chrono::Utc>::from(now)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        runs,
        tables,
        quarantine,
        too_late,
        sources: (*sources).clone(),
    }))
}

async fn runs_report(
    api: &Api,
    store: &strata_orchestrator::RunStore,
    listing: &Listing,
) -> Result<strata_orchestrator::status::Report> {
    strata_orchestrator::status::page_for(&api.inner.config, store, listing)
        .await
        .map_err(|e| Error::Unavailable(format!("run store unavailable: {e}")))
}

/// Partitions `GET /api/runs` lists when `limit` is not given, and at most.
pub const RUNS_PER_PAGE: u64 = 100;
pub const MAX_RUNS_PER_PAGE: u64 = 1_000;

#[derive(Debug, Deserialize)]
struct RunsFilter {
    model: Option<String>,
    state: Option<String>,
    limit: Option<String>,
    offset: Option<String>,
}

/// A whole number query parameter within `range`, else a 400 naming it.
fn whole(name: &str, text: Option<&str>, default: u64, range: RangeInclusive<u64>) -> Result<u64> {
    let Some(text) = text else {
        return Ok(default);
    };
    match text.trim().parse::<u64>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(Error::BadRequest(format!(
            "{name} must be a whole number from {} to {}, not {text:?}",
            range.start(),
            range.end()
        ))),
    }
}

/// The run store's report (`strata status --json`), narrowed to one model
/// or one state, one page of partitions at a time: `next` is the `offset`
/// of the following page.
async fn runs(
    State(api): State<Api>,
    Query(filter): Query<RunsFilter>,
) -> Result<Json<strata_orchestrator::status::Report>> {
    let store = api.inner.store.as_ref().ok_or_else(|| {
        Error::NotFound(
            "this process has no run store (it runs neither the collector nor the scheduler role)"
                .into(),
        )
    })?;
    let limit = whole(
        "limit",
        filter.limit.as_deref(),
        RUNS_PER_PAGE,
        1..=MAX_RUNS_PER_PAGE,
    )?;
    let offset = whole(
        "offset",
        filter.offset.as_deref(),
        0,
        0..=i64::MAX.unsigned_abs(),
    )?;
    let states = match filter.state.as_deref() {
        None => Vec::new(),
        Some(text) => vec![RunState::parse(text).map_err(|_| {
            Error::BadRequest(format!(
                "state must be queued, running, succeeded, failed or blocked, not {text:?}"
            ))
        })?],
    };
    let listing = Listing {
        model: filter.model.clone(),
        states,
        limit: Some(limit),
        offset,
        ..strata_orchestrator::status::everything()
    };
    let mut report = runs_report(&api, store, &listing).await?;
    if let Some(model) = &filter.model {
        report.models.retain(|m| &m.model == model);
        if report.models.is_empty() {
            return Err(Error::NotFound(format!("unknown model {model:?}")));
        }
    }
    Ok(Json(report))
}
