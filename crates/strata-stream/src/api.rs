//! The window `GET /api/realtime?minutes=N` may ask for; the route itself is
//! served by `strata-api`, which also caps the series.

pub const DEFAULT_MINUTES: u32 = 60;
pub const MAX_MINUTES: u32 = 1440;
