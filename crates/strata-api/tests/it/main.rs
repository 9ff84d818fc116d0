//! The dashboard API over real Delta tables on disk, a real run store and
//! real HTTP on loopback. Gold rows are written by hand; every expected
//! figure is worked out by hand from them and SPEC §4.

mod admin;
mod dashboard;
mod hosts;
mod pipeline;
mod products;
mod runs;
mod sql_limits;
mod support;
