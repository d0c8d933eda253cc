//! Compiles `proto/` with protox (no system `protoc` needed) and generates
//! the prost messages and tonic clients and servers from it.

use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    println!("cargo:rerun-if-changed={}", proto_root.display());

    let mut files = Vec::new();
    collect_protos(&proto_root.join("rapport"), &mut files)?;
    files.sort();

    let mut compiler = protox::Compiler::new([&proto_root])?;
    compiler.include_source_info(true).include_imports(true);
    compiler.open_files(&files)?;

    // Reflection serves this set, so clients can discover every message.
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("rapport_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;

    // Type names let event payloads travel as google.protobuf.Any. Maps are
    // ordered, so that a message always encodes to the same bytes: retries
    // are recognised by a hash of the request.
    let mut config = tonic_prost_build::Config::new();
    config.enable_type_names();
    config.btree_map(["."]);
    tonic_prost_build::configure()
        .include_file("rapport.rs")
        .compile_fds_with_config(compiler.file_descriptor_set(), config)?;
    Ok(())
}

fn collect_protos(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_protos(&path, out)?;
        } else if path.extension().is_some_and(|ext| ext == "proto") {
            out.push(path);
        }
    }
    Ok(())
}
