//! One module per dashboard panel: the table snapshot it reads and the
//! answer it computes from it.

pub mod active_users;
pub mod experiments;
pub mod funnels;
pub mod pipeline;
pub mod realtime;
pub mod retention;
pub mod sessions;
pub mod sources;

use chrono::NaiveDate;
use serde::Serialize;

use crate::range::{Available, DateRange};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Empty,
}

/// What every date-ranged answer starts with: the range used, what the
/// table has, and when there is nothing to show, what is missing.
#[derive(Debug, Clone, Serialize)]
pub struct Frame {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub available: Option<Available>,
    pub status: Status,
    pub message: Option<String>,
}

impl Frame {
    /// `shown`: whether the range has anything to show.
    pub fn new(table: &str, range: DateRange, available: Option<Available>, shown: bool) -> Self {
        let message = match (shown, available) {
            (true, _) => None,
            (false, None) => Some(no_rows_yet(table, range)),
            (false, Some(a)) => Some(format!(
                "no rows in {table} from {} to {}: it has {} to {}",
                range.from, range.to, a.first, a.last
            )),
        };
        Frame {
            from: range.from,
            to: range.to,
            available,
            status: if shown { Status::Ok } else { Status::Empty },
            message,
        }
    }
}

/// The empty state of a table nothing was built into yet, with the command
/// that builds it.
pub fn no_rows_yet(table: &str, range: DateRange) -> String {
    format!(
        "no rows in {table} yet: send events, then run `strata backfill all --from {} --to {}` (a running `strata serve` builds them within its dirty_check_interval)",
        range.from, range.to
    )
}

/// The first and last of sorted dates.
pub fn available(mut dates: impl DoubleEndedIterator<Item = NaiveDate>) -> Option<Available> {
    let first = dates.next()?;
    let last = dates.next_back().unwrap_or(first);
    Some(Available { first, last })
}

/// `part / whole`, none when the whole is zero.
pub fn ratio(part: i64, whole: i64) -> Option<f64> {
    (whole != 0).then(|| part as f64 / whole as f64)
}

/// The median, the mean of the two middle values for an even count.
pub fn median(values: &mut [f64]) -> Option<f64> {
    let n = values.len();
    if n == 0 {
        return None;
    }
    let (_, upper, _) = values.select_nth_unstable_by(n / 2, f64::total_cmp);
    let upper = *upper;
    if n % 2 == 1 {
        return Some(upper);
    }
    let lower = values[..n / 2]
        .iter()
        .copied()
        .max_by(f64::total_cmp)
        .unwrap_or(upper);
    Some((lower + upper) / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [5.0]), Some(5.0));
        assert_eq!(median(&mut [9.0, 1.0, 5.0]), Some(5.0));
        assert_eq!(median(&mut [10.0, 1.0, 4.0, 2.0]), Some(3.0));
        assert_eq!(median(&mut [2.0, 2.0, 2.0, 7.0]), Some(2.0));
    }
}
