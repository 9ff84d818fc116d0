//! `gold.dim_users` with a CDC users table (`[cdc] users_table`): the
//! table's email, plan and country changes merge in time with identify
//! traits (SPEC §3 and §7). Expected rows are written by hand.

use serde_json::json;
use strata_batch::dates::day_of_micros;
use strata_batch::{Model, Plan};
use strata_core::event::ChangeOp::{Insert, Update};
use strata_core::event::{BronzeEvent, EventType};

use crate::cdc_feed::*;
use crate::harness::Env;

fn identify(id: &str, user: &str, minute: i64, traits: serde_json::Value) -> BronzeEvent {
    BronzeEvent {
        event_id: id.into(),
        id_generated: false,
        event_type: EventType::Identify,
        event_name: "$identify".into(),
        user_id: Some(user.into()),
        anonymous_id: None,
        event_ts: at(minute),
        ts_clamped: false,
        sent_at: None,
        received_at: at(minute),
        source: "test".into(),
        properties: None,
        context: None,
        traits: Some(traits.to_string()),
    }
}

const USERS: [(&str, &str, i32, bool); 6] = [
    ("id", "int8", -1, true),
    ("user_id", "text", -1, false),
    ("email", "text", -1, false),
    ("plan", "text", -1, false),
    ("country", "text", -1, false),
    ("name", "text", -1, false),
];

#[tokio::test]
async fn dim_users_merges_cdc_changes_with_identifies_and_closes_deleted_users() {
    let env = Env::new(config(true));
    let lake = env.lake();
    env.land(vec![
        (
            0,
            0,
            identify(
                "i1",
                "u1",
                0,
                json!({"plan": "free", "country": "DE", "email": "id@x"}),
            ),
        ),
        (0, 1, identify("i2", "u1", 3, json!({"country": "FR"}))),
        (0, 2, identify("i3", "u3", 4, json!({"plan": "basic"}))),
    ])
    .await;
    land(
        &lake,
        vec![
            relation(0x100, &USERS),
            row(
                Insert,
                0x200,
                0,
                1,
                json!({"id": 20, "user_id": "u2", "email": "u2@x", "plan": "free",
                       "country": "US", "name": "Bo"}),
            ),
            // u1's account: plan pro (a change), country DE (as identified).
            row(
                Insert,
                0x300,
                0,
                2,
                json!({"id": 10, "user_id": "u1", "email": "db@x", "plan": "pro",
                       "country": "DE", "name": "Al"}),
            ),
            // Only the name changes: the country stays FR from the identify.
            row(Update, 0x400, 0, 4, json!({"id": 10, "name": "Alan"})),
            // A hard delete closes u1's current row.
            delete(0x500, 0, 5, 10),
        ],
    )
    .await;
    let day = day_of_micros(at(0));
    env.runner()
        .execute(Plan::range(&Model::all(), day, day))
        .await
        .expect("backfill");
    let query = "select user_id, email, plan, country, valid_from, valid_to, is_current \
                 from gold.dim_users order by user_id, valid_from";
    assert_eq!(
        rows(&lake, query).await,
        [
            "u1|db@x|free|DE|2026-03-01T12:00:00Z|2026-03-01T12:02:00Z|false",
            "u1|db@x|pro|DE|2026-03-01T12:02:00Z|2026-03-01T12:03:00Z|false",
            "u1|db@x|pro|FR|2026-03-01T12:03:00Z|2026-03-01T12:05:00Z|false",
            "u2|u2@x|free|US|2026-03-01T12:01:00Z|∅|true",
            "u3|∅|basic|∅|2026-03-01T12:04:00Z|∅|true",
        ]
    );

    // A later email change of u2 in the database rewrites every row of u2.
    land(
        &lake,
        vec![row(
            Update,
            0x600,
            0,
            6,
            json!({"id": 20, "email": "new@x", "plan": "pro"}),
        )],
    )
    .await;
    let summary = env.run_dirty().await;
    assert!(
        summary.models.contains_key("silver.accounts_history"),
        "{summary:?}"
    );
    assert_eq!(
        rows(
            &lake,
            "select email, plan, valid_from, valid_to, is_current from gold.dim_users \
                     where user_id = 'u2' order by valid_from"
        )
        .await,
        [
            "new@x|free|2026-03-01T12:01:00Z|2026-03-01T12:06:00Z|false",
            "new@x|pro|2026-03-01T12:06:00Z|∅|true",
        ]
    );
}
