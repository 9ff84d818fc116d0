//! `strata bench attacks --quick`: the hostile inputs of issue 23, scaled
//! down, against a `strata serve` child that must go on answering `/health`
//! and stop cleanly.

use crate::process::strata;

#[test]
fn bench_attacks_quick_keeps_the_server_healthy() {
    let out = strata()
        .args(["bench", "attacks", "--quick"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = said
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| attack"))
        .count();
    assert_eq!(rows, 7, "{said}");
    assert!(said.contains("SIGTERM: exit 0"), "{said}");
}
