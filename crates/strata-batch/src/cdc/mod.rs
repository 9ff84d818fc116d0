//! The silver side of PostgreSQL CDC (SPEC §7): for each captured table, a
//! current-state table `silver.<table>` and a history `silver.<table>_history`,
//! built from `bronze.cdc_changes` as models of the batch path.
//!
//! Which tables exist depends on the configuration, while models are values
//! of a closed enum used all over the batch path and the scheduler. The
//! configured tables are therefore registered once per process
//! ([`configure`]), and a model names one by its index in the registry
//! ([`CdcId`]). The registry only grows, so an id never changes meaning.

mod apply;
mod build;
mod cell;
mod changes;
mod history;
mod pg_array;
mod schema;
mod store;
mod watch;

use std::sync::RwLock;

use strata_core::Config;
use strata_lake::schema::TableDef;

use crate::error::{Error, Result};
use crate::io::LakeIo;
use crate::model::{Input, Model, Reach, Upstream, input};
use crate::plan::Outcome;

pub use watch::ChangesWatch;

/// The source kind whose tables become CDC silver tables.
pub const POSTGRES_CDC: &str = "postgres_cdc";

/// A captured table and its two silver tables.
#[derive(Debug)]
pub struct CdcTable {
    pub source: String,
    /// The PostgreSQL schema (`public` when the configuration names none).
    pub schema: String,
    pub name: String,
    pub state: TableDef,
    pub history: TableDef,
}

impl CdcTable {
    /// `schema.name`, as the source's configuration spells it.
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }
}

/// A registered table: an index into the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CdcId(u16);

#[derive(Debug, Clone, Copy)]
enum Users {
    Table(CdcId, &'static [Input]),
    /// `[cdc] users_table` names no captured table.
    Unknown(&'static str),
}

struct Registry {
    tables: Vec<&'static CdcTable>,
    users: Option<Users>,
}

static REGISTRY: RwLock<Registry> = RwLock::new(Registry {
    tables: Vec::new(),
    users: None,
});

fn registry() -> std::sync::RwLockReadGuard<'static, Registry> {
    REGISTRY.read().unwrap_or_else(|e| e.into_inner())
}

/// Every registered table, in registration order.
pub fn ids() -> Vec<CdcId> {
    (0..registry().tables.len() as u16).map(CdcId).collect()
}

pub fn table(id: CdcId) -> &'static CdcTable {
    registry().tables[usize::from(id.0)]
}

/// The table `[cdc] users_table` names, if any; an error when it names no
/// captured table.
pub fn users_table() -> Result<Option<CdcId>> {
    match registry().users {
        None => Ok(None),
        Some(Users::Table(id, _)) => Ok(Some(id)),
        Some(Users::Unknown(name)) => Err(Error::Invalid(format!(
            "[cdc] users_table = {name:?} is not one of the tables of a postgres_cdc source"
        ))),
    }
}

/// `gold.dim_users`' inputs when it reads a users table.
pub(crate) fn users_inputs() -> Option<&'static [Input]> {
    match registry().users {
        Some(Users::Table(_, inputs)) => Some(inputs),
        _ => None,
    }
}

/// Registers the captured tables of the configuration's `postgres_cdc`
/// sources and the `[cdc] users_table`. Idempotent; a table that cannot
/// become a silver table is left out and reported.
pub fn configure(config: &Config) -> Result<()> {
    let mut wanted = Vec::new();
    let mut first_error = None;
    for source in config.sources.iter().filter(|s| s.kind == POSTGRES_CDC) {
        match tables_of(&source.name, source.options.get("tables")) {
            Ok(tables) => wanted.extend(tables),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    let mut registry = REGISTRY.write().unwrap_or_else(|e| e.into_inner());
    for (source, schema, name) in wanted {
        if let Err(e) = register(&mut registry, source, schema, name) {
            first_error.get_or_insert(e);
        }
    }
    registry.users = config.cdc.users_table.as_deref().map(|wanted| {
        let found = registry
            .tables
            .iter()
            .position(|t| t.name == wanted || t.qualified() == wanted);
        match found {
            Some(i) => {
                let id = CdcId(i as u16);
                let inputs: &'static [Input] = Box::leak(Box::new([
                    input(
                        Upstream::Model(Model::Identifies),
                        Reach::Everything,
                        "identify traits of all time, in order",
                    ),
                    input(
                        Upstream::Model(Model::CdcHistory(id)),
                        Reach::Everything,
                        "the users table's email, plan and country changes and deletes",
                    ),
                ]));
                Users::Table(id, inputs)
            }
            None => Users::Unknown(Box::leak(wanted.to_owned().into_boxed_str())),
        }
    });
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// `tables = ["public.accounts", "orders"]` of one source.
fn tables_of(source: &str, tables: Option<&toml::Value>) -> Result<Vec<(String, String, String)>> {
    let invalid = |why: String| Error::Invalid(format!("source {source:?}: {why}"));
    let Some(toml::Value::Array(tables)) = tables else {
        return Err(invalid(
            "a postgres_cdc source needs `tables`, a list of \"schema.table\" names".into(),
        ));
    };
    tables
        .iter()
        .map(|t| {
            let text = t
                .as_str()
                .ok_or_else(|| invalid(format!("`tables` holds {t}, not a table name")))?;
            let (schema, name) = text.split_once('.').unwrap_or(("public", text));
            Ok((source.to_owned(), schema.to_owned(), name.to_owned()))
        })
        .collect()
}

fn register(registry: &mut Registry, source: String, schema: String, name: String) -> Result<()> {
    let plain = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !plain {
        return Err(Error::Invalid(format!(
            "captured table {schema}.{name}: silver.{name} needs a lower-case name of letters, digits and _"
        )));
    }
    let history = format!("{name}_history");
    for model in Model::ALL {
        let def = model.table();
        if def.layer == "silver" && (def.name == name || def.name == history) {
            return Err(Error::Invalid(format!(
                "captured table {schema}.{name} would replace silver.{}, which Strata builds itself",
                def.name
            )));
        }
    }
    for other in &registry.tables {
        if (other.source.as_str(), &other.schema, &other.name) == (source.as_str(), &schema, &name)
        {
            return Ok(());
        }
        let clash = other.name == name || other.history.name == name || other.name == history;
        if clash {
            return Err(Error::Invalid(format!(
                "captured tables {}.{} (source {:?}) and {schema}.{name} (source {source:?}) \
                 would share a silver table",
                other.schema, other.name, other.source
            )));
        }
    }
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let name_static = leak(name.clone());
    let table = CdcTable {
        state: TableDef {
            layer: "silver",
            name: name_static,
            columns: &[],
            partition_by: &[],
            description: leak(format!(
                "Current state of {schema}.{name} (CDC): one row per primary key."
            )),
        },
        history: TableDef {
            layer: "silver",
            name: leak(history),
            columns: &[],
            partition_by: &[],
            description: leak(format!(
                "Every version of every row of {schema}.{name} (CDC), SCD2."
            )),
        },
        source,
        schema,
        name,
    };
    registry.tables.push(Box::leak(Box::new(table)));
    Ok(())
}

/// Builds a CDC model: `silver.<table>` or `silver.<table>_history`.
pub async fn build(io: &LakeIo, model: Model) -> Result<Outcome> {
    match model {
        Model::CdcState(id) => build::state(io, table(id)).await,
        Model::CdcHistory(id) => history::history(io, table(id)).await,
        other => Err(Error::Invalid(format!(
            "{} is not a CDC model",
            other.name()
        ))),
    }
}

/// Deletes the files a CDC model's builds replaced more than `keep` ago;
/// returns how many. The builds do this themselves, at most every half
/// minute and with `store::KEEP_REPLACED`.
pub async fn vacuum_replaced(
    io: &LakeIo,
    model: Model,
    keep: std::time::Duration,
) -> Result<usize> {
    let def = match model {
        Model::CdcState(id) => &table(id).state,
        Model::CdcHistory(id) => &table(id).history,
        other => {
            return Err(Error::Invalid(format!(
                "{} is not a CDC model",
                other.name()
            )));
        }
    };
    match store::open(io, def).await? {
        Some(opened) => store::vacuum(&opened, &def.qualified_name(), keep).await,
        None => Ok(0),
    }
}

/// Whether bronze holds changes a CDC model has not taken in.
pub async fn stale(io: &LakeIo, model: Model) -> Result<bool> {
    match model {
        Model::CdcState(id) => build::stale(io, table(id), false).await,
        Model::CdcHistory(id) => build::stale(io, table(id), true).await,
        _ => Ok(false),
    }
}

/// The CDC models with changes in bronze they have not taken in: what is
/// dirty of them (they keep their position in their own tables, not in the
/// batch state's marks).
pub async fn stale_models(io: &LakeIo) -> Result<Vec<Model>> {
    let mut stale = Vec::new();
    for model in Model::all().into_iter().filter(|m| m.is_cdc()) {
        if self::stale(io, model).await? {
            stale.push(model);
        }
    }
    Ok(stale)
}

/// The names of a table's primary key columns, by its latest definition;
/// `None` before its source sent one.
pub(crate) async fn key_columns(io: &LakeIo, id: CdcId) -> Result<Option<Vec<String>>> {
    Ok(schema::latest(io, table(id)).await?.map(|schema| {
        schema
            .key
            .iter()
            .map(|&i| schema.columns[i].name.clone())
            .collect()
    }))
}
