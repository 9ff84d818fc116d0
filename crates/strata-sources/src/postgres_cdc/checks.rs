//! What a CDC source needs of its database, checked at start over an
//! ordinary connection so each misconfiguration fails with one sentence that
//! names it, instead of a replication protocol error minutes later.

use std::collections::HashMap;
use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{Connection, Row};
use strata_core::event::parse_lsn;

use super::{CdcConfig, TableName};
use crate::{Error, Result};

/// One column of a captured table, as the catalog has it now.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct CatalogColumn {
    pub name: String,
    pub type_id: u32,
    pub type_name: String,
    pub type_modifier: i32,
    pub key: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct CatalogTable {
    pub table: TableName,
    pub columns: Vec<CatalogColumn>,
}

impl CatalogTable {
    pub fn is_key(&self, column: &str) -> bool {
        self.columns.iter().any(|c| c.key && c.name == column)
    }
}

/// What the checks learnt: the listed tables and every type's name.
#[derive(Debug, Clone, Default)]
pub(super) struct Catalog {
    pub tables: Vec<CatalogTable>,
    pub types: HashMap<u32, String>,
}

impl Catalog {
    pub fn table(&self, schema: &str, name: &str) -> Option<&CatalogTable> {
        self.tables
            .iter()
            .find(|t| t.table.schema == schema && t.table.name == name)
    }

    /// `pg_type.typname` of `type_id`, asking the database for a type
    /// created since the start (an enum added with a new column).
    pub async fn type_name(&mut self, conn: &mut PgConnection, type_id: u32) -> Result<String> {
        if let Some(name) = self.types.get(&type_id) {
            return Ok(name.clone());
        }
        let row = sqlx::query("select typname::text from pg_type where oid = $1::int8::oid")
            .bind(i64::from(type_id))
            .fetch_optional(&mut *conn)
            .await
            .map_err(|e| {
                Error::Upstream(format!("cannot read type {type_id} from pg_type: {e}"))
            })?;
        let name = match row {
            Some(row) => row.try_get::<String, _>(0).unwrap_or_default(),
            None => String::new(),
        };
        // An OID the catalog does not know: keep it visible rather than guess.
        let name = if name.is_empty() {
            format!("oid_{type_id}")
        } else {
            name
        };
        self.types.insert(type_id, name.clone());
        Ok(name)
    }
}

/// Where the database is, for error messages: `host:port`.
pub(super) fn address(url: &str) -> String {
    match PgConnectOptions::from_str(url) {
        Ok(options) => format!("{}:{}", options.get_host(), options.get_port()),
        Err(_) => "the configured url".to_string(),
    }
}

/// An ordinary (non-replication) connection.
pub(super) async fn connect(source: &str, url: &str) -> Result<PgConnection> {
    let options = PgConnectOptions::from_str(url).map_err(|e| {
        Error::Config(format!(
            "source {source:?}: url is not a valid PostgreSQL URL: {e}"
        ))
    })?;
    PgConnection::connect_with(&options).await.map_err(|e| {
        Error::Upstream(format!(
            "source {source:?} cannot connect to PostgreSQL at {}: {e}",
            address(url)
        ))
    })
}

fn query_failed(source: &str, what: &str, e: sqlx::Error) -> Error {
    Error::Upstream(format!(
        "source {source:?} could not read {what} from PostgreSQL: {e}"
    ))
}

/// Every check of the brief, in the order a user fixes them: server, role,
/// publication, then each table.
pub(super) async fn check(source: &str, config: &CdcConfig) -> Result<Catalog> {
    let mut conn = connect(source, &config.url).await?;
    let conn = &mut conn;

    let wal_level: String = sqlx::query_scalar("select current_setting('wal_level')")
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| query_failed(source, "wal_level", e))?;
    if wal_level != "logical" {
        return Err(Error::Config(format!(
            "source {source:?}: PostgreSQL at {} has wal_level = {wal_level}, but CDC needs logical; set wal_level = logical in postgresql.conf and restart PostgreSQL",
            address(&config.url)
        )));
    }

    let row = sqlx::query(
        "select current_user::text, current_database()::text, \
         (select rolreplication or rolsuper from pg_roles where rolname = current_user)",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| query_failed(source, "the role's privileges", e))?;
    let role: String = row.try_get(0).unwrap_or_default();
    let database: String = row.try_get(1).unwrap_or_default();
    let replication: Option<bool> = row.try_get(2).unwrap_or(None);
    if replication != Some(true) {
        return Err(Error::Config(format!(
            "source {source:?}: role {role:?} lacks the REPLICATION privilege CDC needs; run ALTER ROLE {role:?} WITH REPLICATION, or connect as a superuser"
        )));
    }

    let publication = sqlx::query(
        "select pubinsert, pubupdate, pubdelete, pubtruncate from pg_publication where pubname = $1",
    )
    .bind(&config.publication)
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| query_failed(source, "the publication", e))?;
    let Some(publication) = publication else {
        let tables: Vec<String> = config.tables.iter().map(|t| t.to_string()).collect();
        return Err(Error::Config(format!(
            "source {source:?}: publication {:?} does not exist in database {database:?}; create it with CREATE PUBLICATION {:?} FOR TABLE {}",
            config.publication,
            config.publication,
            tables.join(", ")
        )));
    };
    let publishes: Vec<bool> = (0..4)
        .map(|i| publication.try_get::<bool, _>(i).unwrap_or(true))
        .collect();
    if publishes.iter().any(|p| !p) {
        // Not refused: a publication of inserts only is a choice, but silver
        // would keep deleted rows, so say so once.
        tracing::warn!(
            source,
            publication = %config.publication,
            "the publication does not publish every kind of change (insert, update, delete, truncate); silver tables will miss the others"
        );
    }

    let mut catalog = Catalog::default();
    for table in &config.tables {
        catalog
            .tables
            .push(check_table(source, conn, config, &role, &database, table).await?);
    }

    let rows = sqlx::query("select oid::int8, typname::text from pg_type")
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| query_failed(source, "pg_type", e))?;
    for row in rows {
        let oid: i64 = row.try_get(0).unwrap_or(-1);
        let name: String = row.try_get(1).unwrap_or_default();
        if let Ok(oid) = u32::try_from(oid) {
            catalog.types.insert(oid, name);
        }
    }
    Ok(catalog)
}

async fn check_table(
    source: &str,
    conn: &mut PgConnection,
    config: &CdcConfig,
    role: &str,
    database: &str,
    table: &TableName,
) -> Result<CatalogTable> {
    let found = sqlx::query(
        "select has_table_privilege(c.oid, 'SELECT'), \
         exists(select 1 from pg_publication_tables p \
                where p.pubname = $3 and p.schemaname = n.nspname and p.tablename = c.relname) \
         from pg_class c join pg_namespace n on n.oid = c.relnamespace \
         where n.nspname = $1 and c.relname = $2 and c.relkind in ('r', 'p')",
    )
    .bind(&table.schema)
    .bind(&table.name)
    .bind(&config.publication)
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| query_failed(source, &format!("table {table}"), e))?;
    let Some(found) = found else {
        return Err(Error::Config(format!(
            "source {source:?}: table {table} does not exist in database {database:?}"
        )));
    };
    let can_select: bool = found.try_get(0).unwrap_or(false);
    let published: bool = found.try_get(1).unwrap_or(false);
    if !published {
        return Err(Error::Config(format!(
            "source {source:?}: table {table} is not in publication {:?}; add it with ALTER PUBLICATION {:?} ADD TABLE {table}",
            config.publication, config.publication
        )));
    }

    let rows = sqlx::query(
        "select a.attname::text, a.atttypid::int8, t.typname::text, a.atttypmod, \
                coalesce(a.attnum = any(i.indkey), false) \
         from pg_attribute a \
         join pg_type t on t.oid = a.atttypid \
         left join pg_index i on i.indrelid = a.attrelid and i.indisprimary \
         where a.attrelid = (select c.oid from pg_class c join pg_namespace n on n.oid = c.relnamespace \
                             where n.nspname = $1 and c.relname = $2) \
           and a.attnum > 0 and not a.attisdropped and a.attgenerated = '' \
         order by a.attnum",
    )
    .bind(&table.schema)
    .bind(&table.name)
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| query_failed(source, &format!("the columns of {table}"), e))?;
    let columns: Vec<CatalogColumn> = rows
        .iter()
        .map(|row| CatalogColumn {
            name: row.try_get(0).unwrap_or_default(),
            type_id: row
                .try_get::<i64, _>(1)
                .ok()
                .and_then(|oid| u32::try_from(oid).ok())
                .unwrap_or(0),
            type_name: row.try_get(2).unwrap_or_default(),
            type_modifier: row.try_get(3).unwrap_or(-1),
            key: row.try_get(4).unwrap_or(false),
        })
        .collect();
    if !columns.iter().any(|c| c.key) {
        return Err(Error::Config(format!(
            "source {source:?}: table {table} has no primary key; CDC needs one to key silver.{}",
            table.name
        )));
    }
    if !can_select {
        return Err(Error::Config(format!(
            "source {source:?}: role {role:?} lacks SELECT on table {table}; run GRANT SELECT ON {table} TO {role:?}"
        )));
    }
    Ok(CatalogTable {
        table: table.clone(),
        columns,
    })
}

/// A replication slot as `pg_replication_slots` shows it.
#[derive(Debug, Clone, Default)]
pub(super) struct SlotRow {
    pub exists: bool,
    pub logical_pgoutput: bool,
    pub database: Option<String>,
    pub active_pid: Option<i32>,
    pub confirmed_flush_lsn: Option<u64>,
    pub restart_lsn: Option<u64>,
    pub current_wal_lsn: Option<u64>,
    pub current_database: Option<String>,
}

pub(super) async fn slot_row(conn: &mut PgConnection, slot: &str) -> Result<SlotRow> {
    let row = sqlx::query(
        "select s.slot_name is not null, \
                coalesce(s.slot_type = 'logical' and s.plugin = 'pgoutput', false), \
                s.database::text, s.active_pid, s.confirmed_flush_lsn::text, s.restart_lsn::text, \
                pg_current_wal_lsn()::text, current_database()::text \
         from (select 1) one left join pg_replication_slots s on s.slot_name = $1",
    )
    .bind(slot)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| Error::Upstream(format!("cannot read replication slot {slot:?}: {e}")))?;
    let lsn = |i: usize| {
        row.try_get::<Option<String>, _>(i)
            .ok()
            .flatten()
            .and_then(|text| parse_lsn(&text))
    };
    Ok(SlotRow {
        exists: row.try_get(0).unwrap_or(false),
        logical_pgoutput: row.try_get(1).unwrap_or(false),
        database: row.try_get(2).unwrap_or(None),
        active_pid: row.try_get(3).unwrap_or(None),
        confirmed_flush_lsn: lsn(4),
        restart_lsn: lsn(5),
        current_wal_lsn: lsn(6),
        current_database: row.try_get(7).unwrap_or(None),
    })
}

/// Drops a slot of ours that holds no usable position (a snapshot that did
/// not complete). A walsender that was ours may hold it a moment longer
/// after a crash; the caller retries.
pub(super) async fn drop_slot(conn: &mut PgConnection, slot: &str) -> Result<()> {
    sqlx::query("select pg_drop_replication_slot($1)")
        .bind(slot)
        .execute(&mut *conn)
        .await
        .map_err(|e| Error::Upstream(format!("cannot drop replication slot {slot:?}: {e}")))?;
    Ok(())
}
