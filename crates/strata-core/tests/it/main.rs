mod codec;
mod config;
mod normalize;
