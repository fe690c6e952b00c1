//! Generates the gRPC code of `proto/custody/v1` with the protoc binary
//! that `protoc-bin-vendored` ships, so a fresh machine needs nothing else.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure().compile_with_config(
        config,
        &["proto/custody/v1/custody.proto"],
        &["proto"],
    )?;
    Ok(())
}
