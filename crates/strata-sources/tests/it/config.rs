//! `[[sources]]` entries are checked by their kind's own config struct, with
//! errors that name the source and the key.

use strata_core::Config;

fn check(toml: &str) -> Result<(), String> {
    let config = Config::from_toml(toml).map_err(|e| e.to_string())?;
    strata_sources::check_config(&config).map_err(|e| e.to_string())
}

#[test]
fn http_is_the_default_kind_and_its_keys_are_checked() {
    check("[[sources]]\nname = \"web\"\nwrite_key = \"k\"\n").unwrap();
    check("[[sources]]\nname = \"web\"\nkind = \"http\"\nwrite_key = \"k\"\n").unwrap();
    let err =
        check("[[sources]]\nname = \"a\"\nwrite_key = \"k\"\nwritekey = \"x\"\n").unwrap_err();
    assert_eq!(
        err,
        "source \"a\" (kind \"http\"): unknown field `writekey`, expected `write_key`"
    );
}

#[test]
fn an_unknown_kind_names_the_known_ones() {
    let err = check("[[sources]]\nname = \"db\"\nkind = \"mysql_cdc\"\n").unwrap_err();
    assert_eq!(
        err,
        "source \"db\" has unknown kind \"mysql_cdc\"; the kinds are http, postgres_cdc, log_file, file"
    );
}

#[test]
fn a_postgres_cdc_entry_needs_its_keys_and_no_others() {
    let good = "[[sources]]\nname = \"shop\"\nkind = \"postgres_cdc\"\n\
                url = \"postgres://postgres@127.0.0.1:5433/shop\"\n\
                publication = \"strata\"\ntables = [\"public.accounts\", \"orders\"]\n";
    check(good).unwrap();
    let err = check(
        "[[sources]]\nname = \"shop\"\nkind = \"postgres_cdc\"\npublication = \"p\"\ntables = [\"a\"]\n",
    )
    .unwrap_err();
    assert!(
        err.starts_with("source \"shop\" (kind \"postgres_cdc\"): "),
        "{err}"
    );
    assert!(err.contains("missing field `url`"), "{err}");
    let err = check(&good.replace("tables =", "tabels =")).unwrap_err();
    assert!(err.contains("unknown field `tabels`"), "{err}");
    // A CDC source has no write key, and the write key check leaves it be.
    check(&format!(
        "{good}\n[[sources]]\nname = \"web\"\nwrite_key = \"k\"\n"
    ))
    .unwrap();
}
