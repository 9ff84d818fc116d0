//! `strata demo --postgres URL`: the shop's own database next to its events.
//! A schema `strata_demo` with accounts (the same people the generated
//! events come from), products and orders, replicated by a `postgres_cdc`
//! source, and changed every few seconds while the events flow: plans are
//! upgraded, people move, prices change, orders come in, accounts close.

use std::time::Duration;

use rand::Rng;
use sqlx::postgres::{PgPool, PgPoolOptions};
use strata_core::Config;
use strata_core::config::SourceConfig;

use crate::error::{CliError, Result};

const SCHEMA: &str = "strata_demo";
pub const SOURCE: &str = "shop_db";
const ACCOUNTS: u64 = 500;
const PRODUCTS: u64 = 20;

/// Creates the schema when missing, and adds its source to `config`.
pub async fn prepare(url: &str, config: &mut Config, seed: u64) -> Result<PgPool> {
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(url)
        .await
        .map_err(|e| CliError::Usage(format!("cannot connect to --postgres {url}: {e}")))?;
    let exists: bool = sqlx::query_scalar(
        "select exists (select 1 from information_schema.schemata where schema_name = $1)",
    )
    .bind(SCHEMA)
    .fetch_one(&pool)
    .await
    .map_err(CliError::runtime)?;
    if !exists {
        create_schema(&pool, seed).await?;
    }
    let mut options = toml::Table::new();
    options.insert("url".into(), url.into());
    options.insert("publication".into(), SCHEMA.into());
    options.insert("slot".into(), SCHEMA.into());
    options.insert(
        "tables".into(),
        toml::Value::Array(
            ["accounts", "products", "orders"]
                .map(|t| toml::Value::String(format!("{SCHEMA}.{t}")))
                .to_vec(),
        ),
    );
    config.sources.push(SourceConfig {
        name: SOURCE.into(),
        kind: "postgres_cdc".into(),
        options,
    });
    config.cdc.users_table = Some("accounts".into());
    Ok(pool)
}

async fn exec(pool: &PgPool, sql: &str) -> Result<()> {
    sqlx::raw_sql(sql)
        .execute(pool)
        .await
        .map(|_| ())
        .map_err(|e| CliError::Runtime(format!("demo database: {e}")))
}

async fn create_schema(pool: &PgPool, seed: u64) -> Result<()> {
    exec(
        pool,
        &format!(
            "create schema {SCHEMA};
             create table {SCHEMA}.accounts (id bigint primary key, user_id text not null unique,
               email text, plan text not null, country text, created_at timestamptz not null default now());
             create table {SCHEMA}.products (product_id text primary key, name text not null,
               category text not null, price numeric(10,2) not null);
             create table {SCHEMA}.orders (order_id bigint primary key, account_id bigint not null,
               product_id text not null, amount numeric(10,2) not null, status text not null,
               ordered_at timestamptz not null default now());
             create publication {SCHEMA} for table {SCHEMA}.accounts, {SCHEMA}.products, {SCHEMA}.orders;"
        ),
    )
    .await?;
    let countries = ["US", "DE", "FR", "GB", "BR", "IN", "JP"];
    let mut values = Vec::new();
    for i in 0..ACCOUNTS {
        let user = strata_generate::user_id(seed, i);
        let plan = if i % 7 == 0 { "pro" } else { "free" };
        let country = countries[(i % countries.len() as u64) as usize];
        values.push(format!(
            "({i}, '{user}', '{user}@shop.example', '{plan}', '{country}')"
        ));
    }
    exec(
        pool,
        &format!(
            "insert into {SCHEMA}.accounts (id, user_id, email, plan, country) values {}",
            values.join(",")
        ),
    )
    .await?;
    let categories = ["shoes", "shirts", "bags", "hats"];
    let products: Vec<String> = (0..PRODUCTS)
        .map(|i| {
            format!(
                "('p{i:03}', 'Product {i}', '{}', {}.99)",
                categories[(i % 4) as usize],
                10 + i * 5
            )
        })
        .collect();
    exec(
        pool,
        &format!(
            "insert into {SCHEMA}.products values {}",
            products.join(",")
        ),
    )
    .await
}

/// Changes the shop database every two seconds until the task is aborted.
pub fn spawn_changes(pool: PgPool) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut order: i64 = sqlx::query_scalar(&format!(
            "select coalesce(max(order_id), 0) from {SCHEMA}.orders"
        ))
        .fetch_one(&pool)
        .await
        .unwrap_or(0);
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let sql = {
                let mut rng = rand::rng();
                let account = rng.random_range(0..ACCOUNTS);
                let product = rng.random_range(0..PRODUCTS);
                order += 1;
                match rng.random_range(0..10) {
                    0 => format!("update {SCHEMA}.accounts set plan = 'pro' where id = {account}"),
                    1 => {
                        format!("update {SCHEMA}.accounts set country = 'CA' where id = {account}")
                    }
                    2 => format!(
                        "update {SCHEMA}.products set price = price + 1 where product_id = 'p{product:03}'"
                    ),
                    3 if account % 50 == 0 => {
                        format!("delete from {SCHEMA}.accounts where id = {account}")
                    }
                    _ => format!(
                        "insert into {SCHEMA}.orders (order_id, account_id, product_id, amount, status) \
                         select {order}, {account}, product_id, price, 'paid' from {SCHEMA}.products \
                         where product_id = 'p{product:03}'"
                    ),
                }
            };
            if let Err(e) = exec(&pool, &sql).await {
                eprintln!("demo database changes stopped: {e}");
                return;
            }
        }
    })
}
