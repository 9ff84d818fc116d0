pub mod bench;
pub mod demo;
pub mod generate;
pub mod home;
pub mod serve;
pub mod sql;
pub mod status;
