//! Where data comes from: `[[sources]]` entries and `[cdc]` (SPEC §7).

use serde::{Deserialize, Deserializer};

/// One `[[sources]]` entry (SPEC §7): a `name`, a `kind` (default `http`) and
/// the kind's own keys. Those are read and checked by the kind's config
/// struct, which lives beside its runtime in `strata-sources`; here only what
/// every kind shares is checked.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceConfig {
    pub name: String,
    pub kind: String,
    /// The entry's keys other than `name` and `kind`.
    pub options: toml::Table,
}

pub const HTTP_KIND: &str = "http";

impl SourceConfig {
    /// An HTTP (Segment API) source.
    pub fn http(name: impl Into<String>, write_key: impl Into<String>) -> Self {
        let mut options = toml::Table::new();
        options.insert("write_key".into(), toml::Value::String(write_key.into()));
        Self {
            name: name.into(),
            kind: HTTP_KIND.into(),
            options,
        }
    }

    pub fn is_http(&self) -> bool {
        self.kind == HTTP_KIND
    }

    /// The write key of an HTTP source; `None` for other kinds.
    pub fn write_key(&self) -> Option<&str> {
        if !self.is_http() {
            return None;
        }
        self.options.get("write_key").and_then(toml::Value::as_str)
    }
}

impl<'de> Deserialize<'de> for SourceConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let mut options = toml::Table::deserialize(deserializer)?;
        let name = match options.remove("name") {
            Some(toml::Value::String(name)) => name,
            Some(_) => return Err(D::Error::custom("a source's `name` must be a string")),
            None => return Err(D::Error::custom("every [[sources]] entry needs a `name`")),
        };
        let kind = match options.remove("kind") {
            Some(toml::Value::String(kind)) => kind,
            Some(_) => {
                return Err(D::Error::custom(format!(
                    "source {name:?}: `kind` must be a string"
                )));
            }
            None => HTTP_KIND.to_string(),
        };
        Ok(Self {
            name,
            kind,
            options,
        })
    }
}

/// How captured database tables feed the modeled layer (SPEC §7).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct CdcConfig {
    /// A captured table with a `user_id` column whose `email`, `plan` and
    /// `country` changes feed `gold.dim_users`, e.g. `"accounts"`.
    pub users_table: Option<String>,
}
