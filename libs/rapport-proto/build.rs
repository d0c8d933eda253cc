//! Compiles `proto/` with protox (no system `protoc` needed) and generates
//! the prost messages and tonic clients and servers from it, plus what the
//! contract declares beyond messages: each package's error reasons and each
//! event payload's type (see `contract.rs` in OUT_DIR).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use prost_reflect::{DescriptorPool, Value};

/// The message option naming the event type a payload message carries.
const EVENT_TYPE_OPTION: &str = "rapport.api.v1.event_type";
/// The message option marking a payload that carries ids only.
const IDS_ONLY_OPTION: &str = "rapport.api.v1.ids_only";

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
    std::fs::write(
        out_dir.join("contract.rs"),
        contract_impls(&compiler.descriptor_pool())?,
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

/// `ErrorReason` for every package's `ErrorReason` enum, `EventPayload`
/// for every message with the `event_type` option, and `GrpcServer` for
/// every generated server.
fn contract_impls(pool: &DescriptorPool) -> Result<String, Box<dyn std::error::Error>> {
    let rust_path = |full_name: &str| format!("generated::{}", full_name.replace('.', "::"));
    let mut out = String::new();
    for file in pool.files() {
        if !file.package_name().starts_with("rapport.") {
            continue;
        }
        for service in file.services() {
            let module = format!(
                "{}::{}_server",
                rust_path(file.package_name()),
                snake_case(service.name())
            );
            writeln!(
                out,
                "impl<T: {module}::{name}> crate::GrpcServer for {module}::{name}Server<T> {{ \
                 fn tuned(self, max_request_bytes: usize, max_response_bytes: usize) -> Self {{ \
                 self.max_decoding_message_size(max_request_bytes) \
                 .max_encoding_message_size(max_response_bytes) \
                 .accept_compressed(tonic::codec::CompressionEncoding::Gzip) \
                 .send_compressed(tonic::codec::CompressionEncoding::Gzip) }} }}",
                name = service.name()
            )?;
        }
        for reason in file.enums().filter(|e| e.name() == "ErrorReason") {
            writeln!(
                out,
                "impl crate::ErrorReason for {path} {{ fn name(self) -> &'static str {{ self.as_str_name() }} }}",
                path = rust_path(reason.full_name())
            )?;
        }
    }
    let event_type = pool
        .get_extension_by_name(EVENT_TYPE_OPTION)
        .ok_or("the event_type option is not defined")?;
    let ids_only = pool
        .get_extension_by_name(IDS_ONLY_OPTION)
        .ok_or("the ids_only option is not defined")?;
    let mut seen = std::collections::BTreeMap::new();
    let mut ids_only_types = Vec::new();
    for message in pool.all_messages() {
        let options = message.options();
        if !options.has_extension(&event_type) {
            continue;
        }
        let Value::String(kind) = options.get_extension(&event_type).into_owned() else {
            return Err(format!("{}: event_type must be a string", message.full_name()).into());
        };
        if let Some(other) = seen.insert(kind.clone(), message.full_name().to_owned()) {
            return Err(format!(
                "event type {kind:?} is declared by {other} and {}",
                message.full_name()
            )
            .into());
        }
        let ids_only = options.get_extension(&ids_only).as_bool().unwrap_or(false);
        if ids_only {
            ids_only_types.push(kind.clone());
        }
        writeln!(
            out,
            "impl crate::EventPayload for {path} {{ const EVENT_TYPE: &'static str = {kind:?}; const IDS_ONLY: bool = {ids_only}; }}",
            path = rust_path(message.full_name())
        )?;
    }
    writeln!(
        out,
        "/// Every event type whose payload carries ids only (never redacted).\npub const IDS_ONLY_EVENT_TYPES: &[&str] = &{ids_only_types:?};"
    )?;
    Ok(out)
}

/// `ContactsService` -> `contacts_service`, as tonic names server modules.
fn snake_case(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
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
