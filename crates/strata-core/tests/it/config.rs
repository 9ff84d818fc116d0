use std::time::Duration;

use strata_core::Config;

#[test]
fn empty_file_gives_spec_defaults() {
    let config = Config::from_toml("").unwrap();
    assert_eq!(config.listen, "127.0.0.1:8080");
    assert_eq!(config.data_dir, std::path::PathBuf::from("./strata-data"));
    assert_eq!(config.collector.max_message_bytes, 32 * 1024);
    assert_eq!(config.collector.max_request_bytes, 500 * 1024);
    assert_eq!(
        config.orchestrator.dirty_check_interval,
        Duration::from_secs(300)
    );
    assert_eq!(config.experiments.conversion_event, "Order Completed");
    assert_eq!(
        config.experiments.conversion_window,
        Duration::from_secs(7 * 86400)
    );
    let funnels = config.effective_funnels();
    assert_eq!(funnels.len(), 1);
    assert_eq!(
        funnels[0].steps,
        [
            "Product Viewed",
            "Product Added",
            "Checkout Started",
            "Order Completed"
        ]
    );
    assert_eq!(funnels[0].window, Duration::from_secs(86400));
}

#[test]
fn spec_example_parses() {
    let text = r#"
listen = "127.0.0.1:9090"
data_dir = "/tmp/x"
admin_token = "secret"

[[sources]]
name = "web"
write_key = "wk_web_example"

[[funnels]]
name = "checkout"
steps = ["Product Viewed", "Product Added", "Checkout Started", "Order Completed"]
window = "24h"

[experiments]
conversion_event = "Order Completed"
conversion_window = "7d"

[orchestrator]
database_url = "postgres://localhost/strata"
dirty_check_interval = "5m"
"#;
    let config = Config::from_toml(text).unwrap();
    assert_eq!(config.sources[0].name, "web");
    assert_eq!(config.sources[0].write_key(), Some("wk_web_example"));
    assert_eq!(config.funnels[0].window, Duration::from_secs(86400));
    assert_eq!(config.admin_token.as_deref(), Some("secret"));
    assert_eq!(
        config.orchestrator.dirty_check_interval,
        Duration::from_secs(300)
    );
}

#[test]
fn unknown_top_level_key_is_named() {
    let err = Config::from_toml("listen = \"x\"\nbogus_key = 1\n").unwrap_err();
    assert!(err.to_string().contains("bogus_key"), "{err}");
}

#[test]
fn source_entries_are_tagged_by_kind_with_http_the_default() {
    let config = Config::from_toml(
        "[[sources]]\nname = \"web\"\nwrite_key = \"k\"\n\n[[sources]]\nname = \"shop\"\nkind = \"postgres_cdc\"\nurl = \"postgres://db/shop\"\n",
    )
    .unwrap();
    assert_eq!(config.sources[0].kind, "http");
    assert_eq!(config.sources[0].write_key(), Some("k"));
    assert_eq!(config.sources[1].kind, "postgres_cdc");
    assert_eq!(config.sources[1].write_key(), None);
    assert_eq!(
        config.sources[1]
            .options
            .get("url")
            .and_then(|v| v.as_str()),
        Some("postgres://db/shop")
    );
    // A kind's own keys are checked by the kind (strata-sources); what
    // every entry needs is checked here.
    let err = Config::from_toml("[[sources]]\nkind = \"http\"\nwrite_key = \"k\"\n").unwrap_err();
    assert!(err.to_string().contains("`name`"), "{err}");
    let err = Config::from_toml("[[sources]]\nname = \"a\"\n").unwrap_err();
    assert!(err.to_string().contains("write_key"), "{err}");
    let err = Config::from_toml("[[sources]]\nname = \"a\"\nkind = 3\n").unwrap_err();
    assert!(err.to_string().contains("`kind` must be a string"), "{err}");
}

#[test]
fn cdc_users_table_is_read() {
    let config = Config::from_toml("[cdc]\nusers_table = \"accounts\"\n").unwrap();
    assert_eq!(config.cdc.users_table.as_deref(), Some("accounts"));
    let err = Config::from_toml("[cdc]\nuser_table = \"accounts\"\n").unwrap_err();
    assert!(err.to_string().contains("user_table"), "{err}");
}

#[test]
fn unknown_nested_key_is_named() {
    let err = Config::from_toml("[orchestrator]\ndirty_interval = \"5m\"\n").unwrap_err();
    assert!(err.to_string().contains("dirty_interval"), "{err}");
}

#[test]
fn bad_duration_and_duplicate_keys_are_errors() {
    let err = Config::from_toml("[orchestrator]\ndirty_check_interval = \"soon\"\n").unwrap_err();
    assert!(err.to_string().contains("soon"), "{err}");
    let err = Config::from_toml(
        "[[sources]]\nname = \"a\"\nwrite_key = \"k\"\n[[sources]]\nname = \"b\"\nwrite_key = \"k\"\n",
    )
    .unwrap_err();
    assert!(err.to_string().contains("write_key"), "{err}");
}

#[test]
fn collector_item_and_event_name_limits_default_and_are_configurable() {
    let config = Config::from_toml("").unwrap();
    assert_eq!(config.collector.max_event_name_bytes, 256);
    assert_eq!(config.collector.max_batch_items, 2_000);
    let config =
        Config::from_toml("[collector]\nmax_event_name_bytes = 64\nmax_batch_items = 10\n")
            .unwrap();
    assert_eq!(config.collector.max_event_name_bytes, 64);
    assert_eq!(config.collector.max_batch_items, 10);
    for zero in ["max_event_name_bytes = 0", "max_batch_items = 0"] {
        let err = Config::from_toml(&format!("[collector]\n{zero}\n")).unwrap_err();
        assert!(err.to_string().contains("at least 1"), "{err}");
    }
}
