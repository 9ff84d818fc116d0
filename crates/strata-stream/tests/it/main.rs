mod bounds;
mod dedup;
mod harness;
mod lateness;
mod restart;
