//! Column definitions of the silver and gold tables (SPEC §3). Reasons for
//! each partitioning and clustering choice are in `docs/tables.md`.

use strata_lake::schema::{ColumnType as T, TableDef, col};

pub const SILVER_EVENTS: TableDef = TableDef {
    layer: "silver",
    name: "events",
    columns: &[
        col("event_id", T::String, false),
        col("id_generated", T::Boolean, false),
        col("event_type", T::String, false),
        col("event_name", T::String, false),
        col("user_id", T::String, true),
        col("anonymous_id", T::String, true),
        col("event_ts", T::Timestamp, false),
        col("event_ts_clamped", T::Boolean, false),
        col("sent_at", T::Timestamp, true),
        col("received_at", T::Timestamp, false),
        col("source", T::String, false),
        col("properties", T::String, true),
        col("context", T::String, true),
        col("traits", T::String, true),
        col("log_partition", T::Int, false),
        col("log_offset", T::Long, false),
        col("person_id", T::String, false),
        col("session_id", T::String, false),
        col("platform", T::String, false),
        col("event_date", T::Date, false),
    ],
    partition_by: &["event_date"],
    description: "One row per event_id (first-received copy) with person, session and platform.",
};

pub const SILVER_IDENTITY: TableDef = TableDef {
    layer: "silver",
    name: "identity",
    columns: &[
        col("anonymous_id", T::String, false),
        col("user_id", T::String, false),
        col("linked_at", T::Timestamp, false),
        col("link_event_id", T::String, false),
        col("ignored_links", T::Long, false),
    ],
    partition_by: &[],
    description: "The earliest user link of every anonymous id; later conflicting links counted.",
};

pub const SILVER_ACTIVE_DAYS: TableDef = TableDef {
    layer: "silver",
    name: "active_days",
    columns: &[
        col("person_id", T::String, false),
        col("events", T::Long, false),
        col("event_date", T::Date, false),
    ],
    partition_by: &["event_date"],
    description: "Persons with at least one track, page or screen event on a date.",
};

pub const SILVER_IDENTIFIES: TableDef = TableDef {
    layer: "silver",
    name: "identifies",
    columns: &[
        col("user_id", T::String, false),
        col("event_ts", T::Timestamp, false),
        col("event_id", T::String, false),
        col("traits", T::String, true),
        col("event_date", T::Date, false),
    ],
    partition_by: &["event_date"],
    description: "Identify events that carry a user id: the input of gold.dim_users.",
};

pub const SILVER_EXPERIMENT_EVENTS: TableDef = TableDef {
    layer: "silver",
    name: "experiment_events",
    columns: &[
        col("kind", T::String, false),
        col("experiment_id", T::String, true),
        col("variant", T::String, true),
        col("person_id", T::String, false),
        col("event_ts", T::Timestamp, false),
        col("event_id", T::String, false),
        col("event_date", T::Date, false),
    ],
    partition_by: &["event_date"],
    description: "Experiment exposures (parsed) and conversion events: the input of gold.experiment_results.",
};

pub const GOLD_DIM_USERS: TableDef = TableDef {
    layer: "gold",
    name: "dim_users",
    columns: &[
        col("user_id", T::String, false),
        col("email", T::String, true),
        col("plan", T::String, true),
        col("country", T::String, true),
        col("valid_from", T::Timestamp, false),
        col("valid_to", T::Timestamp, true),
        col("is_current", T::Boolean, false),
    ],
    partition_by: &[],
    description: "Users as SCD2 on plan and country, SCD1 on email, from identify traits.",
};

pub const GOLD_FCT_SESSIONS: TableDef = TableDef {
    layer: "gold",
    name: "fct_sessions",
    columns: &[
        col("session_id", T::String, false),
        col("person_id", T::String, false),
        col("session_date", T::Date, false),
        col("session_start", T::Timestamp, false),
        col("session_end", T::Timestamp, false),
        col("duration_s", T::Double, false),
        col("event_count", T::Long, false),
        col("platform", T::String, false),
    ],
    partition_by: &["session_date"],
    description: "Sessions: 30-minute inactivity gaps per person, dated by their first event.",
};

pub const GOLD_HOURLY_EVENTS: TableDef = TableDef {
    layer: "gold",
    name: "hourly_events",
    columns: &[
        col("hour", T::Timestamp, false),
        col("event_name", T::String, false),
        col("events", T::Long, false),
        col("users", T::Long, false),
        col("event_date", T::Date, false),
    ],
    partition_by: &["event_date"],
    description: "Events and distinct persons per hour and event name.",
};

pub const GOLD_DAILY_ACTIVE_USERS: TableDef = TableDef {
    layer: "gold",
    name: "daily_active_users",
    columns: &[
        col("date", T::Date, false),
        col("dau", T::Long, false),
        col("wau", T::Long, false),
        col("mau", T::Long, false),
        col("new_users", T::Long, false),
    ],
    partition_by: &["date"],
    description: "DAU, WAU (7 days), MAU (28 days) and new users for every date.",
};

pub const GOLD_RETENTION: TableDef = TableDef {
    layer: "gold",
    name: "retention",
    columns: &[
        col("cohort_date", T::Date, false),
        col("day_offset", T::Int, false),
        col("cohort_size", T::Long, false),
        col("retained_users", T::Long, false),
    ],
    partition_by: &["cohort_date"],
    description: "N-day retention of first-active-date cohorts, offsets 0 to 28.",
};

pub const GOLD_FUNNEL_DAILY: TableDef = TableDef {
    layer: "gold",
    name: "funnel_daily",
    columns: &[
        col("funnel", T::String, false),
        col("entry_date", T::Date, false),
        col("step", T::Int, false),
        col("step_name", T::String, false),
        col("users", T::Long, false),
    ],
    partition_by: &["entry_date"],
    description: "Persons reaching each step of each configured funnel, by entry date.",
};

pub const GOLD_EXPERIMENT_RESULTS: TableDef = TableDef {
    layer: "gold",
    name: "experiment_results",
    columns: &[
        col("experiment_id", T::String, false),
        col("variant", T::String, false),
        col("exposed_users", T::Long, false),
        col("converted_users", T::Long, false),
        col("conversion_rate", T::Double, false),
        col("lift", T::Double, true),
        col("p_value", T::Double, true),
        col("ci_low", T::Double, true),
        col("ci_high", T::Double, true),
        col("srm_p_value", T::Double, true),
        col("excluded_users", T::Long, false),
    ],
    partition_by: &[],
    description: "Conversion per experiment variant against control, with significance and SRM.",
};

#[cfg(test)]
mod tests {
    use strata_lake::schema::BRONZE_EVENTS;

    use super::*;

    /// `silver.events` repeats bronze's columns (a const list cannot be
    /// derived from another): they must stay the same, in the same order.
    #[test]
    fn silver_events_carries_every_bronze_column() {
        let bronze: Vec<_> = BRONZE_EVENTS
            .columns
            .iter()
            .filter(|c| c.name != "ingest_date")
            .map(|c| (c.name, c.data_type, c.nullable))
            .collect();
        let silver: Vec<_> = SILVER_EVENTS
            .columns
            .iter()
            .map(|c| (c.name, c.data_type, c.nullable))
            .collect();
        assert_eq!(silver[..bronze.len()], bronze[..]);
        let added: Vec<&str> = silver[bronze.len()..].iter().map(|c| c.0).collect();
        assert_eq!(added, ["person_id", "session_id", "platform", "event_date"]);
    }
}
