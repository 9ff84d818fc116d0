mod config;
mod normalize;
