use strata_lake::Lake;

use crate::support::serve;

const PANELS: [&str; 10] = [
    "realtime-summary",
    "realtime-events",
    "active-users",
    "retention",
    "funnels",
    "experiments",
    "sessions",
    "runs",
    "tables",
    "quarantine",
];

#[tokio::test]
async fn the_page_and_its_assets_are_served_from_the_binary() {
    let api = serve(false, async |_: &Lake| {}).await;
    let page = api
        .client
        .get(format!("{}/", api.url))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = page.text().await.unwrap();
    for panel in PANELS {
        assert!(
            html.contains(&format!("data-panel=\"{panel}\"")),
            "panel {panel} missing"
        );
    }
    // Everything the page loads is served here: no CDN.
    assert!(
        !html.contains("//cdn") && !html.contains("https://"),
        "external reference in the page"
    );
    for (asset, kind) in [
        ("dashboard.js", "text/javascript"),
        ("dashboard.css", "text/css"),
        ("uPlot.iife.min.js", "text/javascript"),
        ("uPlot.min.css", "text/css"),
    ] {
        assert!(
            html.contains(&format!("/assets/{asset}")),
            "{asset} not loaded by the page"
        );
        let response = api
            .client
            .get(format!("{}/assets/{asset}", api.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "{asset}");
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(kind)
        );
        assert!(
            response.text().await.unwrap().len() > 100,
            "{asset} is empty"
        );
    }
    let (status, body) = api.get("/assets/../Cargo.toml").await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = api.get("/assets/nope.js").await;
    assert_eq!(status, 404);
    assert!(body["error"].as_str().unwrap().contains("nope.js"));
}

#[tokio::test]
async fn realtime_without_the_stream_role_says_so() {
    let api = serve(false, async |_: &Lake| {}).await;
    let (status, body) = api.get("/api/realtime").await;
    assert_eq!(status, 404);
    assert!(
        body["error"].as_str().unwrap().contains("stream role"),
        "{body}"
    );
}
