//! UTC dates as Arrow `Date32` day numbers and day bounds in microseconds.

use chrono::{DateTime, NaiveDate};

pub const MICROS_PER_DAY: i64 = 86_400_000_000;
pub const MICROS_PER_HOUR: i64 = 3_600_000_000;

/// Days since 1970-01-01, the Arrow `Date32` representation.
pub type Day = i32;

pub fn day_of_micros(micros: i64) -> Day {
    micros.div_euclid(MICROS_PER_DAY) as Day
}

pub fn day_start(day: Day) -> i64 {
    day as i64 * MICROS_PER_DAY
}

pub fn day_of(date: NaiveDate) -> Day {
    (date - NaiveDate::default()).num_days() as Day
}

pub fn date_of(day: Day) -> NaiveDate {
    NaiveDate::default() + chrono::Duration::days(day as i64)
}

pub fn format_day(day: Day) -> String {
    date_of(day).format("%Y-%m-%d").to_string()
}

pub fn format_micros(micros: i64) -> String {
    DateTime::from_timestamp_micros(micros)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
        .unwrap_or_else(|| micros.to_string())
}

/// Whole days a duration reaches past its start (a 24 h window starting late
/// on `d` ends on `d + 1`).
pub fn days_spanned(micros: i64) -> i32 {
    (micros + MICROS_PER_DAY - 1).div_euclid(MICROS_PER_DAY) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_numbers_round_trip() {
        let d = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();
        assert_eq!(date_of(day_of(d)), d);
        assert_eq!(day_of(NaiveDate::from_ymd_opt(1970, 1, 2).unwrap()), 1);
        assert_eq!(day_of_micros(-1), -1);
        assert_eq!(days_spanned(24 * MICROS_PER_HOUR), 1);
        assert_eq!(days_spanned(24 * MICROS_PER_HOUR + 1), 2);
    }
}
