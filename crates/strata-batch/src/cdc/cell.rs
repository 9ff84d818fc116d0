//! Column values of a captured table: parsed from the PostgreSQL text form
//! that `bronze.cdc_changes` keeps in JSON, read back from a silver table,
//! and built into Arrow arrays. One `Cell` type for all three, so a value
//! that went through silver compares equal to the same value parsed again.

use std::cmp::Ordering;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use deltalake::arrow::array::{
    Array, ArrayRef, AsArray, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder,
    Float64Builder, Int16Builder, Int32Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Float32Type, Float64Type, Int16Type, Int32Type,
    Int64Type, TimeUnit, TimestampMicrosecondType,
};
use serde_json::value::RawValue;

use super::pg_array;
use crate::error::Result;

/// The Arrow type a PostgreSQL column becomes in silver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bool,
    I16,
    I32,
    I64,
    F32,
    F64,
    Decimal {
        precision: u8,
        scale: i8,
    },
    /// Text as PostgreSQL prints it: text types, enums, uuid, json, an
    /// unconstrained numeric, and every type without a closer Arrow match.
    Text,
    Date,
    /// Microseconds, UTC; a `timestamp` without zone is read as UTC.
    Timestamp,
    /// An array, kept as the text of a JSON array.
    Array(Elem),
}

/// How the elements of an array become JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Elem {
    Number,
    Bool,
    Json,
    Text,
}

impl Kind {
    /// `type_name` as `pg_type.typname` spells it; `type_modifier` is
    /// `atttypmod` (-1 when none).
    pub fn of(type_name: &str, type_modifier: i32) -> Kind {
        if let Some(element) = type_name.strip_prefix('_') {
            return Kind::Array(match element {
                "int2" | "int4" | "int8" | "float4" | "float8" | "numeric" | "oid" => Elem::Number,
                "bool" => Elem::Bool,
                "json" | "jsonb" => Elem::Json,
                _ => Elem::Text,
            });
        }
        match type_name {
            "bool" => Kind::Bool,
            "int2" => Kind::I16,
            "int4" => Kind::I32,
            "int8" | "oid" => Kind::I64,
            "float4" => Kind::F32,
            "float8" => Kind::F64,
            "numeric" => numeric(type_modifier),
            "date" => Kind::Date,
            "timestamp" | "timestamptz" => Kind::Timestamp,
            _ => Kind::Text,
        }
    }

    pub fn arrow(self) -> DataType {
        match self {
            Kind::Bool => DataType::Boolean,
            Kind::I16 => DataType::Int16,
            Kind::I32 => DataType::Int32,
            Kind::I64 => DataType::Int64,
            Kind::F32 => DataType::Float32,
            Kind::F64 => DataType::Float64,
            Kind::Decimal { precision, scale } => DataType::Decimal128(precision, scale),
            Kind::Text | Kind::Array(_) => DataType::Utf8,
            Kind::Date => DataType::Date32,
            Kind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        }
    }

    /// A value from bronze's JSON. `Err` carries the text that does not
    /// parse as this kind.
    pub fn parse(self, raw: &RawValue) -> std::result::Result<Cell, String> {
        let text = raw.get();
        let value = match text.as_bytes().first() {
            Some(b'"') => Json::Str(
                serde_json::from_str::<std::borrow::Cow<str>>(text).map_err(|_| text.to_owned())?,
            ),
            _ if text == "null" => return Ok(Cell::Null),
            _ => Json::Literal(text),
        };
        self.parse_value(&value)
            .ok_or_else(|| value.text().to_owned())
    }

    fn parse_value(self, value: &Json) -> Option<Cell> {
        let text = value.text().trim();
        Some(match self {
            Kind::Bool => Cell::Bool(parse_bool(text)?),
            Kind::I16 => Cell::I16(text.parse().ok()?),
            Kind::I32 => Cell::I32(text.parse().ok()?),
            Kind::I64 => Cell::I64(text.parse().ok()?),
            Kind::F32 => Cell::F32(parse_float(text)? as f32),
            Kind::F64 => Cell::F64(parse_float(text)?),
            Kind::Decimal { precision, scale } => {
                Cell::Decimal(parse_decimal(text, precision, scale)?)
            }
            Kind::Text => Cell::Text(value.text().into()),
            Kind::Date => Cell::Date(parse_date(text)?),
            Kind::Timestamp => Cell::Timestamp(parse_timestamp(text)?),
            Kind::Array(elem) => match value {
                // Already JSON (a source that converted it itself).
                Json::Literal(literal) if literal.starts_with('[') => Cell::Text((*literal).into()),
                _ => Cell::Text(pg_array::to_json(text, elem)?.into()),
            },
        })
    }
}

/// `numeric(p, s)` with `atttypmod = ((p << 16) | s) + 4`. Decimal128 holds
/// at most 38 digits and Delta no negative scale; anything else, and an
/// unconstrained numeric (whose values may have any scale), stays exact
/// text rather than being rounded to a scale picked here.
fn numeric(type_modifier: i32) -> Kind {
    if type_modifier < 4 {
        return Kind::Text;
    }
    let packed = type_modifier - 4;
    let precision = (packed >> 16) & 0xffff;
    let scale = packed & 0xffff;
    if (1..=38).contains(&precision) && scale <= precision {
        Kind::Decimal {
            precision: precision as u8,
            scale: scale as i8,
        }
    } else {
        Kind::Text
    }
}

/// A JSON value as bronze holds it: a string (PostgreSQL's text form) or a
/// literal (a number, or anything else a source chose to write).
enum Json<'a> {
    Str(std::borrow::Cow<'a, str>),
    Literal(&'a str),
}

impl Json<'_> {
    fn text(&self) -> &str {
        match self {
            Json::Str(s) => s,
            Json::Literal(l) => l,
        }
    }
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "t" | "true" | "y" | "yes" | "on" | "1" => Some(true),
        "f" | "false" | "n" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

fn parse_float(text: &str) -> Option<f64> {
    match text {
        "NaN" => Some(f64::NAN),
        "Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        _ => text.parse().ok().filter(|f: &f64| f.is_finite()),
    }
}

/// PostgreSQL's numeric text (`-123.4500`) as an integer scaled by `scale`,
/// rounded half away from zero as PostgreSQL rounds; `None` past `precision`
/// digits, for `NaN` and infinities, and for an exponent.
pub fn parse_decimal(text: &str, precision: u8, scale: i8) -> Option<i128> {
    let (negative, digits) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let numeric = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !numeric(whole) || !numeric(fraction) {
        return None;
    }
    let mut value: i128 = 0;
    let push =
        |value: i128, digit: u8| value.checked_mul(10)?.checked_add(i128::from(digit - b'0'));
    for digit in whole.bytes() {
        value = push(value, digit)?;
    }
    let scale = usize::try_from(scale).ok()?;
    let fraction = fraction.as_bytes();
    for i in 0..scale {
        value = push(value, fraction.get(i).copied().unwrap_or(b'0'))?;
    }
    if fraction.get(scale).is_some_and(|d| *d >= b'5') {
        value = value.checked_add(1)?;
    }
    if value >= 10i128.checked_pow(u32::from(precision))? {
        return None;
    }
    Some(if negative { -value } else { value })
}

/// `YYYY-MM-DD` as days since 1970-01-01; `infinity` and BC dates have no
/// Date32 counterpart here and do not parse.
pub fn parse_date(text: &str) -> Option<i32> {
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    i32::try_from((date - NaiveDate::default()).num_days()).ok()
}

/// `timestamptz` text (`2026-03-01 12:00:00.5+05:30`, or `+00`) as UTC
/// microseconds; a `timestamp` without zone is taken to be UTC.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    let text = if text.as_bytes().get(10) == Some(&b'T') {
        std::borrow::Cow::Owned(format!("{} {}", &text[..10], &text[11..]))
    } else {
        std::borrow::Cow::Borrowed(text)
    };
    if let Ok(at) = DateTime::parse_from_str(&text, "%Y-%m-%d %H:%M:%S%.f%#z") {
        return Some(at.timestamp_micros());
    }
    if let Some(utc) = text.strip_suffix('Z')
        && let Ok(at) = NaiveDateTime::parse_from_str(utc, "%Y-%m-%d %H:%M:%S%.f")
    {
        return Some(at.and_utc().timestamp_micros());
    }
    NaiveDateTime::parse_from_str(&text, "%Y-%m-%d %H:%M:%S%.f")
        .ok()
        .map(|at| at.and_utc().timestamp_micros())
}

/// One value. Floats compare and hash by their bits, so `NaN` equals itself
/// and a change to a float column is a change.
#[derive(Debug, Clone)]
pub enum Cell {
    Null,
    Bool(bool),
    I16(i16),
    I32(i32),
    I64(i64),
    F32(f32),
    F64(f64),
    Decimal(i128),
    Text(Box<str>),
    Date(i32),
    Timestamp(i64),
}

impl Cell {
    fn rank(&self) -> u8 {
        match self {
            Cell::Null => 0,
            Cell::Bool(_) => 1,
            Cell::I16(_) => 2,
            Cell::I32(_) => 3,
            Cell::I64(_) => 4,
            Cell::F32(_) => 5,
            Cell::F64(_) => 6,
            Cell::Decimal(_) => 7,
            Cell::Text(_) => 8,
            Cell::Date(_) => 9,
            Cell::Timestamp(_) => 10,
        }
    }
}

impl Ord for Cell {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Cell::Bool(a), Cell::Bool(b)) => a.cmp(b),
            (Cell::I16(a), Cell::I16(b)) => a.cmp(b),
            (Cell::I32(a), Cell::I32(b)) => a.cmp(b),
            (Cell::I64(a), Cell::I64(b)) => a.cmp(b),
            (Cell::F32(a), Cell::F32(b)) => a.total_cmp(b),
            (Cell::F64(a), Cell::F64(b)) => a.total_cmp(b),
            (Cell::Decimal(a), Cell::Decimal(b)) => a.cmp(b),
            (Cell::Text(a), Cell::Text(b)) => a.cmp(b),
            (Cell::Date(a), Cell::Date(b)) => a.cmp(b),
            (Cell::Timestamp(a), Cell::Timestamp(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl PartialOrd for Cell {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Cell {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Cell {}

impl Hash for Cell {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.rank().hash(state);
        match self {
            Cell::Null => {}
            Cell::Bool(v) => v.hash(state),
            Cell::I16(v) => v.hash(state),
            Cell::I32(v) => v.hash(state),
            Cell::I64(v) => v.hash(state),
            Cell::F32(v) => v.to_bits().hash(state),
            Cell::F64(v) => v.to_bits().hash(state),
            Cell::Decimal(v) => v.hash(state),
            Cell::Text(v) => v.hash(state),
            Cell::Date(v) => v.hash(state),
            Cell::Timestamp(v) => v.hash(state),
        }
    }
}

/// A column of a silver table, cast to its kind's layout, read row by row.
pub struct Reader {
    kind: Kind,
    array: ArrayRef,
}

impl Reader {
    pub fn new(array: &ArrayRef, kind: Kind) -> Result<Self> {
        let to = kind.arrow();
        // Delta scans return strings as views: read them as they come
        // rather than copying every string of the table.
        let text = matches!(kind, Kind::Text | Kind::Array(_))
            && matches!(
                array.data_type(),
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
            );
        let array = if text || array.data_type() == &to {
            Arc::clone(array)
        } else {
            cast(array, &to)?
        };
        Ok(Self { kind, array })
    }

    pub fn cell(&self, row: usize) -> Cell {
        let a = &self.array;
        if a.is_null(row) {
            return Cell::Null;
        }
        match self.kind {
            Kind::Bool => Cell::Bool(a.as_boolean().value(row)),
            Kind::I16 => Cell::I16(a.as_primitive::<Int16Type>().value(row)),
            Kind::I32 => Cell::I32(a.as_primitive::<Int32Type>().value(row)),
            Kind::I64 => Cell::I64(a.as_primitive::<Int64Type>().value(row)),
            Kind::F32 => Cell::F32(a.as_primitive::<Float32Type>().value(row)),
            Kind::F64 => Cell::F64(a.as_primitive::<Float64Type>().value(row)),
            Kind::Decimal { .. } => Cell::Decimal(a.as_primitive::<Decimal128Type>().value(row)),
            Kind::Text | Kind::Array(_) => Cell::Text(
                match a.data_type() {
                    DataType::Utf8View => a.as_string_view().value(row),
                    DataType::LargeUtf8 => a.as_string::<i64>().value(row),
                    _ => a.as_string::<i32>().value(row),
                }
                .into(),
            ),
            Kind::Date => Cell::Date(a.as_primitive::<Date32Type>().value(row)),
            Kind::Timestamp => {
                Cell::Timestamp(a.as_primitive::<TimestampMicrosecondType>().value(row))
            }
        }
    }
}

/// The Arrow array of one column's cells. A cell of another kind than the
/// column's (which the parsers never produce) is written as null.
pub fn build<'a>(kind: Kind, cells: impl ExactSizeIterator<Item = &'a Cell>) -> Result<ArrayRef> {
    let n = cells.len();
    macro_rules! primitive {
        ($builder:expr, $variant:ident) => {{
            let mut b = $builder;
            for cell in cells {
                match cell {
                    Cell::$variant(v) => b.append_value(*v),
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish()) as ArrayRef
        }};
    }
    Ok(match kind {
        Kind::Bool => primitive!(BooleanBuilder::with_capacity(n), Bool),
        Kind::I16 => primitive!(Int16Builder::with_capacity(n), I16),
        Kind::I32 => primitive!(Int32Builder::with_capacity(n), I32),
        Kind::I64 => primitive!(Int64Builder::with_capacity(n), I64),
        Kind::F32 => primitive!(Float32Builder::with_capacity(n), F32),
        Kind::F64 => primitive!(Float64Builder::with_capacity(n), F64),
        Kind::Decimal { precision, scale } => primitive!(
            Decimal128Builder::with_capacity(n).with_precision_and_scale(precision, scale)?,
            Decimal
        ),
        Kind::Text | Kind::Array(_) => {
            let mut b = StringBuilder::with_capacity(n, n * 16);
            for cell in cells {
                match cell {
                    Cell::Text(v) => b.append_value(v),
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
        Kind::Date => primitive!(Date32Builder::with_capacity(n), Date),
        Kind::Timestamp => primitive!(
            TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC"),
            Timestamp
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(kind: Kind, json: &str) -> std::result::Result<Cell, String> {
        let raw: Box<RawValue> = serde_json::from_str(json).unwrap();
        kind.parse(&raw)
    }

    #[test]
    fn postgres_text_forms_parse_to_their_kinds() {
        assert_eq!(parse(Kind::Bool, r#""t""#), Ok(Cell::Bool(true)));
        assert_eq!(parse(Kind::I16, "-7"), Ok(Cell::I16(-7)));
        assert!(parse(Kind::I16, "70000").is_err());
        assert_eq!(parse(Kind::I64, r#""42""#), Ok(Cell::I64(42)));
        assert_eq!(parse(Kind::F64, r#""NaN""#), Ok(Cell::F64(f64::NAN)));
        let money = Kind::of("numeric", ((10 << 16) | 2) + 4);
        assert_eq!(
            money,
            Kind::Decimal {
                precision: 10,
                scale: 2
            }
        );
        assert_eq!(parse(money, "12.345"), Ok(Cell::Decimal(1235)));
        assert_eq!(parse(money, r#""-0.5""#), Ok(Cell::Decimal(-50)));
        assert!(parse(money, "123456789.1").is_err());
        assert!(parse(money, r#""NaN""#).is_err());
        assert_eq!(Kind::of("numeric", -1), Kind::Text);
        assert_eq!(
            parse(Kind::Text, "123.4567890123456789012345"),
            Ok(Cell::Text("123.4567890123456789012345".into()))
        );
        // 2026-03-01 is day 20513.
        assert_eq!(parse(Kind::Date, r#""2026-03-01""#), Ok(Cell::Date(20_513)));
        assert!(parse(Kind::Date, r#""infinity""#).is_err());
        let noon = 1_772_366_400_000_000;
        assert_eq!(
            parse(Kind::Timestamp, r#""2026-03-01 12:00:00+00""#),
            Ok(Cell::Timestamp(noon))
        );
        assert_eq!(
            parse(Kind::Timestamp, r#""2026-03-01 17:30:00.25+05:30""#),
            Ok(Cell::Timestamp(noon + 250_000))
        );
        assert_eq!(
            parse(Kind::Timestamp, r#""2026-03-01 12:00:00""#),
            Ok(Cell::Timestamp(noon))
        );
        assert_eq!(parse(Kind::I32, "null"), Ok(Cell::Null));
        assert_eq!(
            parse(Kind::of("_int4", -1), r#""{1,2,NULL}""#),
            Ok(Cell::Text("[1,2,null]".into()))
        );
    }
}
