//! Compiles `proto/ordo/v1/ordo.proto` with protox (pure Rust: no `protoc` needed) and
//! generates the messages, the server trait and the client with tonic. The encoded
//! descriptor set is kept for gRPC server reflection.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(["ordo/v1/ordo.proto"], ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("ordo_v1_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_prost_build::configure()
        .build_transport(std::env::var_os("CARGO_FEATURE_TRANSPORT").is_some())
        .compile_fds(descriptors)?;
    Ok(())
}
