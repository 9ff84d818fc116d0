//! Queries built to exhaust the stack: a chain of operators parses into a
//! tree one level deeper per operator, and planning such a tree recursed
//! until the whole process aborted (5,000 terms over HTTP, 50,000 in
//! `strata sql`). Each must be refused with a sentence naming the limit,
//! and the server must go on answering.

use std::process::{Command, Stdio};

use crate::process::{Served, assert_success, run};

const ADMIN: &str = "admin-it";

/// `select 1+1+…+1` with `terms` ones.
fn chain(terms: usize) -> String {
    format!("select {}", vec!["1"; terms].join("+"))
}

#[test]
fn strata_sql_refuses_a_50_000_term_chain_without_aborting() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&["sql", &chain(50_000)], dir.path());
    // A stack overflow ends the process by a signal, with no exit code.
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("sql.max_expression_depth"), "{said}");

    let out = run(&["sql", &chain(300), "--format", "csv"], dir.path());
    assert_success(&out);
    assert!(
        String::from_utf8_lossy(&out.stdout).ends_with("\n300\n"),
        "{out:?}"
    );
}

#[test]
fn strata_sql_refuses_a_query_over_max_query_bytes() {
    let dir = tempfile::tempdir().unwrap();
    // One argument of a command line holds at most 128 KiB, less than the
    // 256 KiB default: the limit is lowered to show it applies.
    let config = dir.path().join("strata.toml");
    std::fs::write(&config, "[sql]\nmax_query_bytes = \"16KiB\"\n").unwrap();
    let long = format!("select 1 -- {}", "x".repeat(20 * 1024));
    let out = run(
        &["--config", config.to_str().unwrap(), "sql", &long],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("longer than sql.max_query_bytes (16384 bytes)"),
        "{said}"
    );
}

fn post_sql(base: &str, query: &str) -> (u16, serde_json::Value) {
    let body = serde_json::json!({ "query": query }).to_string();
    let out = Command::new("curl")
        .args([
            "-s",
            "-w",
            "\n%{http_code}",
            "-H",
            "content-type: application/json",
        ])
        .args(["-H", &format!("authorization: Bearer {ADMIN}")])
        .args(["--data-binary", "@-", &format!("{base}/api/sql")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(body.as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let (json, code) = text.rsplit_once('\n').unwrap();
    (
        code.trim().parse().unwrap(),
        serde_json::from_str(json).unwrap_or(serde_json::Value::Null),
    )
}

#[test]
fn the_server_refuses_a_5_000_term_chain_and_stays_up() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start_env(dir.path(), &[], &[("STRATA_ADMIN_TOKEN", ADMIN)]);
    let (status, said) = post_sql(&served.base, &chain(5_000));
    assert_eq!(status, 400, "{said}");
    assert!(
        said["error"]
            .as_str()
            .unwrap()
            .contains("sql.max_expression_depth"),
        "{said}"
    );
    let (status, said) = post_sql(&served.base, &chain(300));
    assert_eq!(
        (status, said["rows"][0][0].as_i64()),
        (200, Some(300)),
        "{said}"
    );
    assert!(served.healthy());
}
