mod codec;
mod config;
mod event;
mod normalize;
