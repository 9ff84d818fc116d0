use serde_json::{Value, json};
use strata_batch::tables::{
    GOLD_DAILY_ACTIVE_USERS, GOLD_EXPERIMENT_RESULTS, GOLD_FCT_SESSIONS, GOLD_FUNNEL_DAILY,
    GOLD_RETENTION,
};
use strata_lake::Lake;

use crate::support::{Served, serve, write};

async fn gold(lake: &Lake) {
    write(
        lake,
        &GOLD_DAILY_ACTIVE_USERS,
        &[
            vec![json!("2026-03-01"), json!(3), json!(3), json!(3), json!(3)],
            vec![json!("2026-03-02"), json!(2), json!(4), json!(4), json!(1)],
            vec![json!("2026-03-03"), json!(4), json!(5), json!(5), json!(1)],
        ],
    )
    .await;
    let retention = [
        ("2026-03-01", 3, vec![3, 1, 2]),
        ("2026-03-02", 1, vec![1, 1]),
        ("2026-03-03", 1, vec![1]),
    ];
    let rows: Vec<Vec<Value>> = retention
        .iter()
        .flat_map(|(date, size, retained)| {
            retained
                .iter()
                .enumerate()
                .map(move |(offset, r)| vec![json!(date), json!(offset), json!(size), json!(r)])
        })
        .collect();
    write(lake, &GOLD_RETENTION, &rows).await;
    let steps = [
        "Product Viewed",
        "Product Added",
        "Checkout Started",
        "Order Completed",
    ];
    let mut funnel = Vec::new();
    for (date, users) in [("2026-03-01", [10, 5, 2, 1]), ("2026-03-02", [10, 3, 2, 0])] {
        for (i, n) in users.iter().enumerate() {
            funnel.push(vec![
                json!("checkout"),
                json!(date),
                json!(i + 1),
                json!(steps[i]),
                json!(n),
            ]);
        }
    }
    // A funnel no longer configured is not shown.
    funnel.push(vec![
        json!("signup"),
        json!("2026-03-01"),
        json!(1),
        json!("Signed Up"),
        json!(99),
    ]);
    write(lake, &GOLD_FUNNEL_DAILY, &funnel).await;
    let null = Value::Null;
    write(
        lake,
        &GOLD_EXPERIMENT_RESULTS,
        &[
            vec![
                json!("button"),
                json!("blue"),
                json!(100),
                json!(15),
                json!(0.15),
                json!(0.5),
                json!(0.2),
                json!(-0.03),
                json!(0.13),
                json!(0.5),
                json!(0),
            ],
            vec![
                json!("button"),
                json!("control"),
                json!(100),
                json!(10),
                json!(0.1),
                null.clone(),
                null.clone(),
                null.clone(),
                null.clone(),
                json!(0.5),
                json!(0),
            ],
            vec![
                json!("alpha"),
                json!("b"),
                json!(40),
                json!(4),
                json!(0.1),
                json!(0.0),
                json!(1.0),
                json!(-0.1),
                json!(0.1),
                json!(0.0001),
                json!(2),
            ],
            vec![
                json!("alpha"),
                json!("a"),
                json!(160),
                json!(16),
                json!(0.1),
                null.clone(),
                null.clone(),
                null.clone(),
                null,
                json!(0.0001),
                json!(2),
            ],
        ],
    )
    .await;
    let session = |id: &str, date: &str, duration: f64, events: i64, platform: &str| {
        let start = format!("{date}T10:00:00Z");
        vec![
            json!(id),
            json!("p"),
            json!(date),
            json!(start),
            json!(start),
            json!(duration),
            json!(events),
            json!(platform),
        ]
    };
    write(
        lake,
        &GOLD_FCT_SESSIONS,
        &[
            session("s1", "2026-03-01", 60.0, 2, "web"),
            session("s2", "2026-03-01", 120.0, 4, "web"),
            session("s3", "2026-03-01", 30.0, 1, "ios"),
            session("s4", "2026-03-02", 600.0, 5, "android"),
            session("s5", "2026-03-02", 10.0, 1, "web"),
        ],
    )
    .await;
}

async fn served() -> Served {
    serve(false, async |lake: &Lake| gold(lake).await).await
}

#[tokio::test]
async fn active_users_default_to_the_last_thirty_days_with_data() {
    let api = served().await;
    let (status, body) = api.get("/api/active-users").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["from"], "2026-02-02");
    assert_eq!(body["to"], "2026-03-03");
    assert_eq!(body["status"], "ok");
    assert_eq!(body["message"], Value::Null);
    assert_eq!(
        body["available"],
        json!({"first": "2026-03-01", "last": "2026-03-03"})
    );
    assert_eq!(
        body["days"],
        json!([
            {"date": "2026-03-01", "dau": 3, "wau": 3, "mau": 3, "new_users": 3},
            {"date": "2026-03-02", "dau": 2, "wau": 4, "mau": 4, "new_users": 1},
            {"date": "2026-03-03", "dau": 4, "wau": 5, "mau": 5, "new_users": 1},
        ])
    );
    assert_eq!(
        body["summary"],
        json!({"dau": 4, "wau": 5, "mau": 5, "new_users": 5, "avg_dau": 3.0})
    );

    let (_, one) = api
        .get("/api/active-users?from=2026-03-02&to=2026-03-02")
        .await;
    assert_eq!(
        one["summary"],
        json!({"dau": 2, "wau": 4, "mau": 4, "new_users": 1, "avg_dau": 2.0})
    );

    let (_, none) = api
        .get("/api/active-users?from=2026-04-01&to=2026-04-05")
        .await;
    assert_eq!(none["status"], "empty");
    assert_eq!(none["days"], json!([]));
    assert_eq!(none["summary"], Value::Null);
    let message = none["message"].as_str().unwrap();
    assert!(message.contains("2026-03-01 to 2026-03-03"), "{message}");
}

#[tokio::test]
async fn bad_ranges_answer_400_with_the_reason() {
    let api = served().await;
    for (query, says) in [
        ("from=2026-03-05&to=2026-03-01", "after"),
        ("from=03/01/2026", "YYYY-MM-DD"),
        ("to=2026-02-30", "YYYY-MM-DD"),
    ] {
        for path in ["active-users", "retention", "funnels", "sessions"] {
            let (status, body) = api.get(&format!("/api/{path}?{query}")).await;
            assert_eq!(status, 400, "{path}?{query}: {body}");
            assert!(body["error"].as_str().unwrap().contains(says), "{body}");
        }
    }
}

#[tokio::test]
async fn retention_heatmap_and_weighted_average_by_offset() {
    let api = served().await;
    let (status, body) = api
        .get("/api/retention?from=2026-03-01&to=2026-03-03")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["max_offset"], 28);
    let cohorts = body["cohorts"].as_array().unwrap();
    assert_eq!(cohorts.len(), 3);
    assert_eq!(cohorts[0]["cohort_date"], "2026-03-01");
    assert_eq!(cohorts[0]["cohort_size"], 3);
    assert_eq!(cohorts[0]["retained"], json!([3, 1, 2]));
    assert_eq!(cohorts[0]["rates"], json!([1.0, 1.0 / 3.0, 2.0 / 3.0]));
    assert_eq!(cohorts[2]["retained"], json!([1]));
    // Offset 1: (1 + 1) / (3 + 1) over the two cohorts old enough.
    assert_eq!(
        body["average"],
        json!([
            {"day_offset": 0, "rate": 1.0, "cohorts": 3},
            {"day_offset": 1, "rate": 0.5, "cohorts": 2},
            {"day_offset": 2, "rate": 2.0 / 3.0, "cohorts": 1},
        ])
    );
    let (_, later) = api
        .get("/api/retention?from=2026-03-02&to=2026-03-03")
        .await;
    assert_eq!(
        later["average"][1],
        json!({"day_offset": 1, "rate": 1.0, "cohorts": 1})
    );
}

#[tokio::test]
async fn funnel_steps_are_summed_over_entry_dates_with_step_to_step_conversion() {
    let api = served().await;
    let (status, body) = api.get("/api/funnels?from=2026-03-01&to=2026-03-02").await;
    assert_eq!(status, 200, "{body}");
    let funnels = body["funnels"].as_array().unwrap();
    assert_eq!(funnels.len(), 1, "only configured funnels: {body}");
    let f = &funnels[0];
    assert_eq!(f["name"], "checkout");
    assert_eq!(f["window"], "24h");
    assert_eq!(f["window_seconds"], 86400);
    let users: Vec<i64> = f["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["users"].as_i64().unwrap())
        .collect();
    assert_eq!(users, [20, 8, 4, 1]);
    assert_eq!(f["steps"][0]["conversion_from_previous"], Value::Null);
    assert_eq!(f["steps"][1]["conversion_from_previous"], 0.4);
    assert_eq!(f["steps"][2]["conversion_from_previous"], 0.5);
    assert_eq!(f["steps"][3]["conversion_from_previous"], 0.25);
    assert_eq!(f["steps"][2]["conversion_from_start"], 0.2);
    assert_eq!(f["steps"][3]["name"], "Order Completed");
    assert_eq!(f["overall_conversion"], 0.05);

    let (_, second) = api.get("/api/funnels?from=2026-03-02&to=2026-03-02").await;
    assert_eq!(second["funnels"][0]["steps"][3]["users"], 0);
    assert_eq!(
        second["funnels"][0]["steps"][3]["conversion_from_previous"],
        0.0
    );
}

#[tokio::test]
async fn experiments_put_control_first_and_warn_on_sample_ratio_mismatch() {
    let api = served().await;
    let (status, body) = api.get("/api/experiments").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok");
    assert_eq!(body["srm_threshold"], 0.001);
    let experiments = body["experiments"].as_array().unwrap();
    assert_eq!(experiments.len(), 2);
    // Without a variant named control, the first by name is control.
    let alpha = &experiments[0];
    assert_eq!(alpha["experiment_id"], "alpha");
    assert_eq!(alpha["srm_warning"], true);
    assert_eq!(alpha["exposed_users"], 200);
    assert_eq!(alpha["variants"][0]["variant"], "a");
    assert_eq!(alpha["variants"][0]["is_control"], true);
    assert_eq!(alpha["variants"][0]["lift"], Value::Null);
    assert_eq!(alpha["variants"][1]["is_control"], false);
    let button = &experiments[1];
    assert_eq!(button["srm_warning"], false);
    assert_eq!(button["srm_p_value"], 0.5);
    assert_eq!(button["variants"][0]["variant"], "control");
    assert_eq!(
        button["variants"][1],
        json!({"variant": "blue", "is_control": false, "exposed_users": 100, "converted_users": 15,
               "conversion_rate": 0.15, "lift": 0.5, "p_value": 0.2, "ci_low": -0.03, "ci_high": 0.13})
    );
}

#[tokio::test]
async fn sessions_count_median_duration_and_platform_split() {
    let api = served().await;
    let (status, body) = api.get("/api/sessions?from=2026-03-01&to=2026-03-02").await;
    assert_eq!(status, 200, "{body}");
    // Durations 10, 30, 60, 120, 600: the median is 60.
    assert_eq!(
        body["summary"],
        json!({"sessions": 5, "median_duration_s": 60.0, "avg_events": 2.6})
    );
    assert_eq!(
        body["by_platform"],
        json!([
            {"platform": "web", "sessions": 3, "share": 0.6, "median_duration_s": 60.0},
            {"platform": "android", "sessions": 1, "share": 0.2, "median_duration_s": 600.0},
            {"platform": "ios", "sessions": 1, "share": 0.2, "median_duration_s": 30.0},
        ])
    );
    assert_eq!(
        body["days"],
        json!([{"date": "2026-03-01", "sessions": 3}, {"date": "2026-03-02", "sessions": 2}])
    );
    // An even count: the mean of 10 and 600.
    let (_, second) = api.get("/api/sessions?from=2026-03-02&to=2026-03-02").await;
    assert_eq!(second["summary"]["median_duration_s"], 305.0);
}

#[tokio::test]
async fn a_new_version_of_a_table_is_seen_on_the_next_call() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path().join("lake"));
    let config = strata_core::Config {
        data_dir: dir.path().to_path_buf(),
        ..strata_core::Config::default()
    };
    let api = strata_api::Api::builder(config).build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, strata_api::router(api)).await });
    let get = async |path: &str| -> Value {
        let text = reqwest::get(format!("{url}{path}"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        serde_json::from_str(&text).unwrap()
    };
    let path = "/api/active-users?from=2026-03-01&to=2026-03-02";
    assert_eq!(get(path).await["status"], "empty");
    let row = |dau: i64| {
        vec![
            json!("2026-03-01"),
            json!(dau),
            json!(dau),
            json!(dau),
            json!(dau),
        ]
    };
    write(&lake, &GOLD_DAILY_ACTIVE_USERS, &[row(7)]).await;
    assert_eq!(get(path).await["summary"]["dau"], 7);
    write(&lake, &GOLD_DAILY_ACTIVE_USERS, &[row(9)]).await;
    assert_eq!(get(path).await["summary"]["dau"], 9);
}

#[tokio::test]
async fn empty_states_say_what_is_missing_and_how_to_fill_it() {
    let api = serve(false, async |_: &Lake| {}).await;
    for path in ["active-users", "retention", "funnels", "sessions"] {
        let (status, body) = api.get(&format!("/api/{path}")).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert_eq!(body["status"], "empty", "{path}");
        let message = body["message"].as_str().unwrap();
        assert!(
            message.contains("strata backfill all --from"),
            "{path}: {message}"
        );
        assert_eq!(body["available"], Value::Null);
    }
    let (_, body) = api.get("/api/experiments").await;
    assert_eq!(body["status"], "empty");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("Experiment Viewed")
    );
    assert_eq!(body["experiments"], json!([]));
}
