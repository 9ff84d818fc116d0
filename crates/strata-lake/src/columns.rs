//! Typed views of the columns of record batches read back from Delta tables.
//!
//! A reader must not assume the Arrow layout a table was written with: the
//! same string column comes back as `Utf8`, `LargeUtf8`, `Utf8View` or a
//! dictionary depending on the DataFusion settings and the Parquet reader,
//! and a timestamp with or without its zone. Every reader of table data goes
//! through these functions, which cast whatever arrives to one layout (and
//! only clone, which is cheap, when it already has it).

use std::sync::Arc;

use deltalake::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Date32Array, Float64Array, Int32Array, Int64Array,
    RecordBatch, StringArray, TimestampMicrosecondArray, UInt64Array,
};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{
    DataType, Date32Type, Float64Type, Int32Type, Int64Type, TimeUnit, TimestampMicrosecondType,
    UInt64Type,
};

use crate::error::{Error, Result};

fn get<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef> {
    batch.column_by_name(name).ok_or_else(|| Error::Column {
        column: name.into(),
        detail: "missing".into(),
    })
}

/// `array` in the layout `to`, cast when it has another one.
fn as_type(name: &str, array: &ArrayRef, to: &DataType) -> Result<ArrayRef> {
    if array.data_type() == to {
        return Ok(Arc::clone(array));
    }
    cast(array, to).map_err(|e| Error::Column {
        column: name.into(),
        detail: format!("cannot read {} as {to}: {e}", array.data_type()),
    })
}

pub fn strings(batch: &RecordBatch, name: &str) -> Result<StringArray> {
    strings_of(name, get(batch, name)?)
}

pub fn strings_at(batch: &RecordBatch, index: usize) -> Result<StringArray> {
    strings_of(&format!("#{index}"), batch.column(index))
}

fn strings_of(name: &str, array: &ArrayRef) -> Result<StringArray> {
    Ok(as_type(name, array, &DataType::Utf8)?
        .as_string::<i32>()
        .clone())
}

/// Microseconds since the epoch, UTC. A zone on the column is kept as it
/// is: the stored values are UTC either way.
pub fn micros(batch: &RecordBatch, name: &str) -> Result<TimestampMicrosecondArray> {
    let array = get(batch, name)?;
    let array = match array.data_type() {
        DataType::Timestamp(TimeUnit::Microsecond, _) => Arc::clone(array),
        _ => as_type(
            name,
            array,
            &DataType::Timestamp(TimeUnit::Microsecond, None),
        )?,
    };
    Ok(array.as_primitive::<TimestampMicrosecondType>().clone())
}

pub fn days(batch: &RecordBatch, name: &str) -> Result<Date32Array> {
    let array = as_type(name, get(batch, name)?, &DataType::Date32)?;
    Ok(array.as_primitive::<Date32Type>().clone())
}

pub fn longs(batch: &RecordBatch, name: &str) -> Result<Int64Array> {
    longs_of(name, get(batch, name)?)
}

pub fn longs_at(batch: &RecordBatch, index: usize) -> Result<Int64Array> {
    longs_of(&format!("#{index}"), batch.column(index))
}

fn longs_of(name: &str, array: &ArrayRef) -> Result<Int64Array> {
    let array = as_type(name, array, &DataType::Int64)?;
    Ok(array.as_primitive::<Int64Type>().clone())
}

pub fn unsigned_longs_at(batch: &RecordBatch, index: usize) -> Result<UInt64Array> {
    let array = as_type(&format!("#{index}"), batch.column(index), &DataType::UInt64)?;
    Ok(array.as_primitive::<UInt64Type>().clone())
}

pub fn doubles(batch: &RecordBatch, name: &str) -> Result<Float64Array> {
    let array = as_type(name, get(batch, name)?, &DataType::Float64)?;
    Ok(array.as_primitive::<Float64Type>().clone())
}

pub fn ints(batch: &RecordBatch, name: &str) -> Result<Int32Array> {
    ints_of(name, get(batch, name)?)
}

pub fn ints_at(batch: &RecordBatch, index: usize) -> Result<Int32Array> {
    ints_of(&format!("#{index}"), batch.column(index))
}

fn ints_of(name: &str, array: &ArrayRef) -> Result<Int32Array> {
    let array = as_type(name, array, &DataType::Int32)?;
    Ok(array.as_primitive::<Int32Type>().clone())
}

pub fn bools(batch: &RecordBatch, name: &str) -> Result<BooleanArray> {
    let array = as_type(name, get(batch, name)?, &DataType::Boolean)?;
    Ok(array.as_boolean().clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::arrow::array::{DictionaryArray, LargeStringArray, StringViewArray};
    use deltalake::arrow::datatypes::{Field, Int32Type as Key, Schema};

    fn batch_of(array: ArrayRef) -> RecordBatch {
        let schema = Schema::new(vec![Field::new("c", array.data_type().clone(), true)]);
        RecordBatch::try_new(Arc::new(schema), vec![array]).unwrap()
    }

    #[test]
    fn every_string_layout_reads_as_utf8() {
        let layouts: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![Some("a"), None, Some("b")])),
            Arc::new(LargeStringArray::from(vec![Some("a"), None, Some("b")])),
            Arc::new(StringViewArray::from(vec![Some("a"), None, Some("b")])),
            Arc::new(
                vec![Some("a"), None, Some("b")]
                    .into_iter()
                    .collect::<DictionaryArray<Key>>(),
            ),
        ];
        for array in layouts {
            let kind = array.data_type().clone();
            let read = strings(&batch_of(array), "c").unwrap();
            assert_eq!(read.value(0), "a", "{kind}");
            assert!(read.is_null(1), "{kind}");
            assert_eq!(read.value(2), "b", "{kind}");
        }
    }

    #[test]
    fn timestamps_with_or_without_zone_and_in_other_units() {
        let micros_utc: ArrayRef =
            Arc::new(TimestampMicrosecondArray::from(vec![1_000_001]).with_timezone("UTC"));
        let micros_naive: ArrayRef = Arc::new(TimestampMicrosecondArray::from(vec![1_000_001]));
        let nanos: ArrayRef = Arc::new(
            deltalake::arrow::array::TimestampNanosecondArray::from(vec![1_000_001_000])
                .with_timezone("+00:00"),
        );
        for array in [micros_utc, micros_naive, nanos] {
            let kind = array.data_type().clone();
            assert_eq!(
                micros(&batch_of(array), "c").unwrap().value(0),
                1_000_001,
                "{kind}"
            );
        }
    }

    #[test]
    fn a_missing_or_unreadable_column_is_an_error_not_a_panic() {
        let batch = batch_of(Arc::new(BooleanArray::from(vec![true])));
        assert!(matches!(strings(&batch, "nope"), Err(Error::Column { .. })));
        assert!(days(&batch, "c").is_err());
    }
}
