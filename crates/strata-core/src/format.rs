//! Versions of Strata's own on-disk formats (log metadata, stream
//! checkpoints, batch state, the bronze index, the run store's schema).
//!
//! Each format carries a number. A binary opens its own version and every
//! older one (migrating where the layout changed); a newer number means the
//! data dir was written by a later Strata, whose layout this binary cannot
//! know, so it refuses instead of misreading or overwriting it.

use std::fmt::Display;

/// The one sentence every component says for a format newer than it knows;
/// `at` is a path or a (redacted) database URL.
pub fn newer_format(what: &str, at: impl Display, found: u32, known: u32) -> String {
    format!(
        "{what} at {at} has format version {found}, newer than version {known} that this Strata \
         reads: it was written by a later Strata release; run that release (or a newer one) on \
         this data dir"
    )
}
