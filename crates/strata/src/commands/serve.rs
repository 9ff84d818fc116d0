use crate::cli::{GlobalArgs, ServeArgs};
use crate::error::Result;
use crate::server::{Server, ensure_default_source, load_config};

pub async fn run(global: &GlobalArgs, args: ServeArgs) -> Result<()> {
    let mut config = load_config(global, args.listen)?;
    if let Some(address) = args.dashboard_listen {
        config.dashboard_listen = Some(address);
    }
    if let Some(key) = ensure_default_source(&mut config)? {
        println!("source `default` write key: {key}");
    }
    let server = Server::start(&config, &args.roles).await?;
    if let Some(addr) = server.addr {
        println!("strata is listening on http://{addr}");
    }
    if let Some(addr) = server.dashboard_addr {
        println!("dashboard and /api/* on http://{addr}");
    }
    server.run_until_signal().await
}
