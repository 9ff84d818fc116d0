//! Rows in a canonical text form, to tell which partitions a rebuild changes.

use std::collections::BTreeMap;

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::util::display::{ArrayFormatter, FormatOptions};
use strata_lake::schema::TableDef;

use crate::dates::Day;
use crate::error::Result;
use crate::io::{LakeIo, column};

/// Every row as one line of its formatted values, sorted.
pub fn canonical_rows(batches: &[RecordBatch]) -> Result<Vec<String>> {
    let options = FormatOptions::default().with_null("∅");
    let mut rows = Vec::new();
    for batch in batches {
        let mut names: Vec<usize> = (0..batch.num_columns()).collect();
        names.sort_by_key(|&i| batch.schema().field(i).name().clone());
        let formatters = names
            .iter()
            .map(|&i| ArrayFormatter::try_new(batch.column(i).as_ref(), &options))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        for row in 0..batch.num_rows() {
            let line: Vec<String> = formatters
                .iter()
                .map(|f| f.value(row).to_string())
                .collect();
            rows.push(line.join("\u{1f}"));
        }
    }
    rows.sort();
    Ok(rows)
}

/// A date-partitioned table's rows, canonical, per partition.
pub async fn rows_by_partition(io: &LakeIo, def: &TableDef) -> Result<BTreeMap<Day, Vec<String>>> {
    let Some(partition) = def.partition_by.first() else {
        return Ok(BTreeMap::new());
    };
    let batches = io.scan(def, &[], None).await?;
    let mut grouped: BTreeMap<Day, Vec<RecordBatch>> = BTreeMap::new();
    for batch in batches {
        let days = column::days(&batch, partition)?;
        for day in days
            .values()
            .iter()
            .copied()
            .collect::<std::collections::BTreeSet<_>>()
        {
            let mask = deltalake::arrow::array::BooleanArray::from(
                days.values().iter().map(|d| *d == day).collect::<Vec<_>>(),
            );
            let part = deltalake::arrow::compute::filter_record_batch(&batch, &mask)?;
            grouped.entry(day).or_default().push(part);
        }
    }
    grouped
        .into_iter()
        .map(|(day, batches)| Ok((day, canonical_rows(&batches)?)))
        .collect()
}
