//! Which `Host` headers the dashboard and API answer.

use strata_api::hosts::AllowedHosts;

#[test]
fn loopback_listen_answers_loopback_names_only() {
    let hosts = AllowedHosts::new(&[], "127.0.0.1:8080");
    for ok in [
        "127.0.0.1:8080",
        "localhost:8080",
        "LOCALHOST",
        "[::1]:8080",
        "app.localhost:1",
        "127.0.0.2",
    ] {
        assert!(hosts.allows(Some(ok)), "{ok}");
    }
    for bad in [
        "evil.example",
        "evil.example:8080",
        "127.0.0.1.evil.example",
        "localhost.evil.example",
        "10.0.0.1:8080",
    ] {
        assert!(!hosts.allows(Some(bad)), "{bad}");
    }
    assert!(hosts.allows(None));
}

#[test]
fn configured_names_ports_and_wildcards() {
    let list = [
        "analytics.example.com".to_string(),
        "*.corp.example".into(),
        "10.0.0.5:8080".into(),
    ];
    let hosts = AllowedHosts::new(&list, "0.0.0.0:8080");
    assert!(hosts.allows(Some("analytics.example.com:443")));
    assert!(hosts.allows(Some("Analytics.Example.Com.")));
    assert!(hosts.allows(Some("bi.corp.example")));
    assert!(hosts.allows(Some("10.0.0.5:8080")));
    assert!(!hosts.allows(Some("10.0.0.5:9090")));
    assert!(!hosts.allows(Some("corp.example")));
    assert!(!hosts.allows(Some("xcorp.example")));
    assert!(!hosts.allows(Some("localhost:8080")));
}

#[test]
fn other_listen_addresses_answer_any_host() {
    let hosts = AllowedHosts::new(&[], "0.0.0.0:8080");
    assert!(hosts.allows(Some("anything.example")));
}

/// A rebinding page's requests say its own name: the dashboard and the API
/// refuse them with 421, and answer the same request sent to a loopback name.
#[tokio::test]
async fn a_foreign_host_is_misdirected_on_the_dashboard_and_the_api() {
    let served = crate::support::serve(false, async |_| {}).await;
    for path in ["/", "/api/pipeline", "/api/active-users"] {
        let answer = served
            .client
            .get(format!("{}{path}", served.url))
            .header("host", "evil.example:8080")
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 421, "{path}");
        let body: serde_json::Value = serde_json::from_str(&answer.text().await.unwrap()).unwrap();
        let error = body["error"].as_str().unwrap();
        assert!(
            error.contains("\"evil.example:8080\"") && error.contains("allowed_hosts"),
            "{error}"
        );

        let port = served.url.rsplit(':').next().unwrap();
        let answer = served
            .client
            .get(format!("{}{path}", served.url))
            .header("host", format!("localhost:{port}"))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 200, "{path}");
    }
}
