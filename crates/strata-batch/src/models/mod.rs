//! One module per model; SQL models keep their query in `sql/`.

pub mod activity;
pub mod dim_users;
mod dim_users_cdc;
pub mod experiments;
pub mod funnels;
pub mod identity;
pub mod platform;
pub mod sessions;
pub mod silver_events;
pub mod sql_models;
