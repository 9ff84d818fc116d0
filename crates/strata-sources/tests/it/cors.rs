//! Which answers other origins' pages may read: the ingestion routes that
//! browser SDKs post to, and nothing else.

use crate::harness::Harness;

#[tokio::test]
async fn only_the_ingestion_routes_allow_other_origins() {
    let h = Harness::start().await;
    for path in ["/health", "/ready", "/metrics"] {
        let answer = h
            .client
            .get(format!("{}{path}", h.base))
            .header("origin", "https://evil.example")
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 200, "{path}");
        assert!(
            answer
                .headers()
                .get("access-control-allow-origin")
                .is_none(),
            "{path}: {:?}",
            answer.headers()
        );
    }

    let preflight = h
        .client
        .request(reqwest::Method::OPTIONS, format!("{}/v1/track", h.base))
        .header("origin", "https://shop.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status().as_u16(), 204);
    assert_eq!(preflight.headers()["access-control-allow-origin"], "*");
    assert_eq!(
        preflight.headers()["access-control-allow-methods"],
        "POST, OPTIONS"
    );
    let tracked = h
        .post_auth("/v1/track")
        .header("origin", "https://shop.example")
        .body(r#"{"userId":"u1","event":"Signed Up"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(tracked.status().as_u16(), 200);
    assert_eq!(tracked.headers()["access-control-allow-origin"], "*");
}
