//! Compiles `proto/strata/v1/batch.proto` with protox (pure Rust), so a build
//! needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let schema = root.join("strata/v1/batch.proto");
    println!("cargo:rerun-if-changed={}", schema.display());
    let descriptors = protox::compile([&schema], [&root])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
