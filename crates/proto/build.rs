//! Compiles proto/shale/v1 with protoc (Debian `protobuf-compiler`, or `$PROTOC`).

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = ["common", "log", "admin", "groups"]
        .map(|name| proto_root.join(format!("shale/v1/{name}.proto")));
    let descriptor = PathBuf::from(std::env::var("OUT_DIR")?).join("shale_v1_descriptor.bin");
    tonic_prost_build::configure()
        .file_descriptor_set_path(&descriptor)
        .bytes(".")
        .compile_protos(&files, std::slice::from_ref(&proto_root))?;
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    Ok(())
}
