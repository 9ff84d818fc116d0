mod dedup;
mod harness;
mod lateness;
mod restart;
