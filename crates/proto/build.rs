//! Compiles proto/shale/v1 with the protoc of the `protoc-bin-vendored` crate, so building
//! needs no system protoc. A `PROTOC` set in the environment wins, as prost-build's own
//! lookup would have it.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = ["common", "log", "admin", "groups"]
        .map(|name| proto_root.join(format!("shale/v1/{name}.proto")));
    let descriptor = PathBuf::from(std::env::var("OUT_DIR")?).join("shale_v1_descriptor.bin");
    let protoc = match std::env::var_os("PROTOC") {
        Some(path) => PathBuf::from(path),
        None => protoc_bin_vendored::protoc_bin_path()?,
    };
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    tonic_prost_build::configure()
        .file_descriptor_set_path(&descriptor)
        .bytes(".")
        // Count limits on the wire bytes before prost materialises a request.
        .codec_path("crate::bounded::BoundedCodec")
        .compile_with_config(config, &files, std::slice::from_ref(&proto_root))?;
    println!("cargo:rerun-if-env-changed=PROTOC");
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    Ok(())
}
