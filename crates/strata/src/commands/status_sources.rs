//! The part of `strata status` about sources that read from elsewhere: each
//! CDC source's replication slot, asked of its database, so the answer
//! holds whether or not a server is running.

use strata_core::Config;

pub async fn print(config: &Config) {
    let cdc: Vec<_> = config
        .sources
        .iter()
        .filter(|s| s.kind == "postgres_cdc")
        .collect();
    if cdc.is_empty() {
        return;
    }
    println!("\nCDC sources");
    for source in cdc {
        match strata_sources::postgres_cdc::slot_status(source).await {
            Ok(status) => println!("  {}: {status}", source.name),
            Err(e) => println!("  {}: {e}", source.name),
        }
    }
}
