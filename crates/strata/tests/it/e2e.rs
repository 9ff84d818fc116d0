use crate::process::{KEY, Served, assert_success, count, strata};

/// generate → POST /v1/batch → log → bronze, then a clean SIGTERM.
#[test]
fn generated_traffic_lands_in_bronze_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(dir.path());
    let out = strata()
        .args([
            "generate",
            "--days",
            "3",
            "--users",
            "150",
            "--seed",
            "3",
            "--target",
            &served.base,
        ])
        .args(["--write-key", KEY])
        .output()
        .unwrap();
    assert_success(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    // "sent N messages in R requests: A accepted, J rejected"
    let numbers: Vec<i64> = stdout
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    let (sent, accepted, rejected) = (numbers[0], numbers[2], numbers[3]);
    assert!(accepted > 1000, "{stdout}");
    assert!(
        rejected > 0,
        "the generator sends some malformed messages: {stdout}"
    );
    assert_eq!(sent, accepted + rejected);

    // SIGTERM: stop accepting, drain the log into bronze, commit, exit 0.
    let status = served.terminate();
    assert!(status.success(), "{status:?}");

    let data_dir = dir.path();
    assert_eq!(
        count(data_dir, "select count(*) from bronze.events"),
        accepted
    );
    assert_eq!(
        count(data_dir, "select count(*) from bronze.quarantine"),
        rejected
    );
    // One row per log record.
    assert_eq!(
        count(
            data_dir,
            "select count(*) from (select distinct log_partition, log_offset from bronze.events)"
        ),
        accepted
    );
    // The generator duplicates about 1% of deliveries; bronze keeps them all.
    let distinct = count(
        data_dir,
        "select count(distinct event_id) from bronze.events",
    );
    assert!(
        distinct < accepted && distinct > accepted * 95 / 100,
        "{distinct} of {accepted}"
    );
    // Every bronze row carries its source and a non-null event time.
    assert_eq!(
        count(
            data_dir,
            "select count(*) from bronze.events where source <> 'default' or event_ts is null"
        ),
        0
    );
}

#[test]
fn status_reports_bronze_and_quarantine() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(dir.path());
    let body =
        r#"{"batch":[{"type":"track","userId":"u","event":"A"},{"type":"track","event":"B"}]}"#;
    let out = crate::process::post(&served.base, "/v1/batch", body);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        r#"{"success":true,"accepted":1,"rejected":1}"#
    );
    assert!(served.terminate().success());
    let out = strata()
        .args(["status", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("bronze.events"), "{text}");
    assert!(text.contains("missing_identity"), "{text}");
}
