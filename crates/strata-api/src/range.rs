//! The `from`/`to` date range of the product panels.

use chrono::{Days, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Days in the range when the client does not choose.
pub const DEFAULT_DAYS: u64 = 30;

#[derive(Debug, Default, Deserialize)]
pub struct RangeParams {
    pub from: Option<String>,
    pub to: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DateRange {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

/// The first and last date a table has rows for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Available {
    pub first: NaiveDate,
    pub last: NaiveDate,
}

impl DateRange {
    /// The range asked for; what is left out is filled in from `anchor`
    /// (the newest date with data, else today) so a first look shows the
    /// last 30 days that have data.
    pub fn resolve(params: &RangeParams, anchor: Option<NaiveDate>) -> Result<DateRange> {
        let span = Days::new(DEFAULT_DAYS - 1);
        let from = params
            .from
            .as_deref()
            .map(|t| parse("from", t))
            .transpose()?;
        let to = params.to.as_deref().map(|t| parse("to", t)).transpose()?;
        let (from, to) = match (from, to) {
            (Some(from), Some(to)) => (from, to),
            (Some(from), None) => (from, from.checked_add_days(span).unwrap_or(from)),
            (None, Some(to)) => (to.checked_sub_days(span).unwrap_or(to), to),
            (None, None) => {
                let to = anchor.unwrap_or_else(|| Utc::now().date_naive());
                (to.checked_sub_days(span).unwrap_or(to), to)
            }
        };
        if from > to {
            return Err(Error::BadRequest(format!("from {from} is after to {to}")));
        }
        Ok(DateRange { from, to })
    }

    pub fn contains(&self, date: NaiveDate) -> bool {
        self.from <= date && date <= self.to
    }
}

fn parse(name: &str, text: &str) -> Result<NaiveDate> {
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
        .map_err(|_| Error::BadRequest(format!("{name}: {text:?} is not a YYYY-MM-DD date")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
    }

    fn params(from: Option<&str>, to: Option<&str>) -> RangeParams {
        RangeParams {
            from: from.map(str::to_owned),
            to: to.map(str::to_owned),
        }
    }

    #[test]
    fn missing_ends_are_thirty_days_from_the_other_or_the_anchor() {
        let anchor = Some(d("2026-03-31"));
        let range = |f, t| DateRange::resolve(&params(f, t), anchor).unwrap();
        assert_eq!(
            range(None, None),
            DateRange {
                from: d("2026-03-02"),
                to: d("2026-03-31")
            }
        );
        assert_eq!(
            range(Some("2026-01-01"), None),
            DateRange {
                from: d("2026-01-01"),
                to: d("2026-01-30")
            }
        );
        assert_eq!(
            range(None, Some("2026-02-01")),
            DateRange {
                from: d("2026-01-03"),
                to: d("2026-02-01")
            }
        );
        assert_eq!(
            range(Some("2026-02-01"), Some("2026-02-01")),
            DateRange {
                from: d("2026-02-01"),
                to: d("2026-02-01")
            }
        );
    }

    #[test]
    fn bad_dates_and_reversed_ranges_are_refused() {
        for (from, to) in [
            (Some("2026-13-01"), None),
            (Some("yesterday"), None),
            (None, Some("2026-02-30")),
            (Some("2026-02-02"), Some("2026-02-01")),
        ] {
            let err = DateRange::resolve(&params(from, to), None).unwrap_err();
            assert!(
                matches!(err, Error::BadRequest(_)),
                "{from:?} {to:?}: {err}"
            );
        }
    }
}
