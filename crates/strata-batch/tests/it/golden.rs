//! SPEC §4 on hand-written fixtures with hand-computed expected tables
//! (`tests/golden/<case>/`, each with a README of the arithmetic).

use crate::harness::{golden_dir, run_case};

macro_rules! golden {
    ($($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                run_case(stringify!($case)).await;
            }
        )*

        #[test]
        fn every_case_is_run() {
            let listed = [$(stringify!($case)),*];
            for entry in std::fs::read_dir(golden_dir()).expect("golden dir") {
                let entry = entry.expect("entry");
                if !entry.path().is_dir() {
                    continue;
                }
                let name = entry.file_name().into_string().expect("utf8");
                assert!(listed.contains(&name.as_str()), "golden case {name} is not listed in golden.rs");
            }
        }
    };
}

golden!(
    identify_after_anonymous,
    alias,
    anon_linked_to_two_users,
    duplicates_across_ingest_days,
    late_event,
    session_across_midnight,
    funnel_edge_cases,
    experiment_two_variants,
    experiment_three_variants_no_control,
    scd2_plan_and_email,
    retention_and_rolling,
    rolling_window_boundaries,
);
