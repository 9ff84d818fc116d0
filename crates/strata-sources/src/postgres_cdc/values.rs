//! Rows as the JSON objects `bronze.cdc_changes` keeps: each column's
//! PostgreSQL text form as a string, numbers as JSON numbers written from
//! their text verbatim (so a `numeric(38,18)` keeps every digit), NULL as
//! null, in the table's column order.
//!
//! The objects are written straight into a `String` rather than built as a
//! `serde_json::Value`: at tens of thousands of changes a second the maps
//! and their allocations would cost more than the rest of the pipeline.

use std::sync::Arc;

use pg_walstream::{ColumnValue, RowData};
use strata_core::event::RelationColumn;

/// The type OIDs whose text form is a JSON number (NaN and the infinities
/// aside, which stay strings).
const NUMBER_TYPES: [u32; 7] = [
    20,   // int8
    21,   // int2
    23,   // int4
    26,   // oid
    700,  // float4
    701,  // float8
    1700, // numeric
];

pub(super) fn is_number_type(type_id: u32) -> bool {
    NUMBER_TYPES.contains(&type_id)
}

/// A captured table as this run knows it: what its values are written as,
/// and which columns key it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Shape {
    pub schema: String,
    pub name: String,
    pub columns: Vec<ShapeColumn>,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct ShapeColumn {
    pub name: Arc<str>,
    pub number: bool,
    /// Part of the primary key (not the replica identity: with REPLICA
    /// IDENTITY FULL pgoutput flags every column).
    pub key: bool,
    pub relation: RelationColumn,
}

impl Shape {
    pub fn qualified_name(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    pub fn relation_columns(&self) -> Vec<RelationColumn> {
        self.columns.iter().map(|c| c.relation.clone()).collect()
    }

    /// The row as an object of every column it carries. pgoutput leaves an
    /// unchanged TOASTed column out of an update's new tuple, and so does
    /// this object: an absent column means "unchanged", never null.
    pub fn row_object(&self, row: &RowData) -> String {
        self.object(row, |_| true)
    }

    /// The row restricted to the columns named in `keep` (the old key tuple
    /// pgoutput sends carries every column, NULL outside the identity).
    pub fn row_object_of(&self, row: &RowData, keep: &[Arc<str>]) -> String {
        self.object(row, |name| keep.iter().any(|k| k.as_ref() == name))
    }

    /// The primary key as an object, from `row`, or from `fallback` for a
    /// key column `row` lacks (an unchanged TOASTed key in an update).
    pub fn key_object(&self, row: &RowData, fallback: Option<&RowData>) -> String {
        let mut out = String::with_capacity(32);
        out.push('{');
        let mut first = true;
        for column in self.columns.iter().filter(|c| c.key) {
            let value = row
                .get(&column.name)
                .or_else(|| fallback.and_then(|f| f.get(&column.name)));
            let Some(value) = value else { continue };
            if !first {
                out.push(',');
            }
            first = false;
            push_string(&mut out, &column.name);
            out.push(':');
            push_value(&mut out, column.number, value);
        }
        out.push('}');
        out
    }

    fn object(&self, row: &RowData, keep: impl Fn(&str) -> bool) -> String {
        let mut out = String::with_capacity(16 + row.len() * 16);
        out.push('{');
        let mut first = true;
        // The row's columns come in the table's order, some left out, so one
        // walk over the shape finds each without a lookup per column.
        let mut shape = self.columns.iter();
        for (name, value) in row.iter() {
            if !keep(name) {
                continue;
            }
            let number = shape
                .by_ref()
                .find(|c| c.name == *name)
                .map(|c| c.number)
                // A column the shape does not know (it cannot happen with a
                // Relation message before each table's rows): text is safe.
                .unwrap_or(false);
            if !first {
                out.push(',');
            }
            first = false;
            push_string(&mut out, name);
            out.push(':');
            push_value(&mut out, number, value);
        }
        out.push('}');
        out
    }
}

fn push_value(out: &mut String, number: bool, value: &ColumnValue) {
    match value {
        ColumnValue::Null => out.push_str("null"),
        ColumnValue::Text(bytes) | ColumnValue::Binary(bytes) => {
            let text = String::from_utf8_lossy(bytes);
            if number && is_json_number(&text) {
                out.push_str(&text);
            } else {
                push_string(out, &text);
            }
        }
    }
}

/// Whether `text` is a number as JSON spells it; PostgreSQL's `NaN`,
/// `Infinity` and `-Infinity` are not, and stay strings.
pub(super) fn is_json_number(text: &str) -> bool {
    let b = text.as_bytes();
    let mut i = 0;
    if b.first() == Some(&b'-') {
        i += 1;
    }
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(c) if c.is_ascii_digit() => {
            digits(&mut i);
        }
        _ => return false,
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    }
    if matches!(b.get(i), Some(b'e') | Some(b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+') | Some(b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// Appends `text` as a JSON string.
pub(super) fn push_string(out: &mut String, text: &str) {
    out.push('"');
    let mut start = 0;
    for (i, c) in text.char_indices() {
        let escape = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            c if (c as u32) < 0x20 => "",
            _ => continue,
        };
        out.push_str(&text[start..i]);
        if escape.is_empty() {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push_str(escape);
        }
        start = i + c.len_utf8();
    }
    out.push_str(&text[start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> Shape {
        let column = |name: &str, number: bool, key: bool| ShapeColumn {
            name: Arc::from(name),
            number,
            key,
            relation: RelationColumn {
                name: name.into(),
                type_name: if number { "numeric" } else { "text" }.into(),
                type_modifier: -1,
                key,
            },
        };
        Shape {
            schema: "public".into(),
            name: "t".into(),
            columns: vec![
                column("id", true, true),
                column("name", false, false),
                column("amount", true, false),
            ],
        }
    }

    fn row(values: &[(&str, Option<&str>)]) -> RowData {
        let mut row = RowData::new();
        for (name, value) in values {
            let value = match value {
                Some(v) => ColumnValue::text(v),
                None => ColumnValue::Null,
            };
            row.push(Arc::from(*name), value);
        }
        row
    }

    #[test]
    fn numbers_stay_verbatim_and_text_is_escaped() {
        let r = row(&[
            ("id", Some("7")),
            ("name", Some("a \"b\"\n\u{1}")),
            ("amount", Some("12345678901234567890.000000000000000001")),
        ]);
        assert_eq!(
            shape().row_object(&r),
            r#"{"id":7,"name":"a \"b\"\n\u0001","amount":12345678901234567890.000000000000000001}"#
        );
        let parsed: serde_json::Value = serde_json::from_str(&shape().row_object(&r)).unwrap();
        assert_eq!(parsed["name"], "a \"b\"\n\u{1}");
    }

    #[test]
    fn nan_and_infinity_are_strings_and_null_is_null() {
        let r = row(&[("id", Some("1")), ("name", None), ("amount", Some("NaN"))]);
        assert_eq!(
            shape().row_object(&r),
            r#"{"id":1,"name":null,"amount":"NaN"}"#
        );
        let r = row(&[("id", Some("1")), ("amount", Some("-Infinity"))]);
        assert_eq!(shape().row_object(&r), r#"{"id":1,"amount":"-Infinity"}"#);
    }

    #[test]
    fn keys_come_from_the_primary_key_and_the_fallback() {
        let new = row(&[("name", Some("x"))]);
        let old = row(&[("id", Some("3")), ("name", None), ("amount", None)]);
        assert_eq!(shape().key_object(&new, Some(&old)), r#"{"id":3}"#);
        assert_eq!(
            shape().row_object_of(&old, &[Arc::from("id")]),
            r#"{"id":3}"#
        );
    }

    #[test]
    fn json_numbers() {
        for ok in ["0", "-0", "12", "1.5", "-1.25e+10", "1E5", "0.000"] {
            assert!(is_json_number(ok), "{ok}");
        }
        for bad in [
            "", "-", "01", "1.", ".5", "1e", "NaN", "Infinity", "1 ", "+1", "0x1",
        ] {
            assert!(!is_json_number(bad), "{bad}");
        }
    }
}
