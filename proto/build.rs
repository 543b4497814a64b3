//! Compiles `proto/tapline/v1/*.proto` at build time, without a system
//! `protoc`: `protox` (a protobuf compiler in pure Rust) parses and checks
//! the files into a `FileDescriptorSet`, which `tonic-prost-build` turns into
//! prost messages and tonic clients and servers, and `pbjson-build` into
//! serde impls that speak the proto3 JSON mapping (what grpcurl and
//! `buf curl` print: lowerCamelCase names, 64-bit integers as strings, enums
//! by name, default values emitted).
//!
//! Writes to `OUT_DIR`:
//! - `tapline.v1.rs`: the generated code, included by `src/lib.rs`;
//! - `tapline.v1.serde.rs`: its `Serialize`/`Deserialize` impls, included
//!   next to it;
//! - `tapline_v1_descriptor_set.bin`: the encoded `FileDescriptorSet` of our
//!   files and everything they import (`google/protobuf/timestamp.proto`),
//!   with comments, for gRPC server reflection.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::{env, fs};

/// Include root of the `.proto` files (import paths are relative to it).
const PROTO_ROOT: &str = "proto";
/// The directory of package `tapline.v1`, relative to the crate.
const PACKAGE_DIR: &str = "proto/tapline/v1";
/// The protobuf package of every file in `PACKAGE_DIR`.
const PACKAGE: &str = "tapline.v1";
/// Name of the descriptor set file in `OUT_DIR`; `src/lib.rs` includes it.
const DESCRIPTOR_SET_FILE: &str = "tapline_v1_descriptor_set.bin";
/// Where `google.protobuf.Timestamp` lives in Rust: pbjson-types' copy is a
/// prost message like prost-types' and serializes as an RFC 3339 string.
const TIMESTAMP_PATH: (&str, &str) = (".google.protobuf.Timestamp", "::pbjson_types::Timestamp");

fn main() -> Result<(), Box<dyn Error>> {
    // Any change under proto/ (a new file too) reruns this script.
    println!("cargo:rerun-if-changed={PROTO_ROOT}");

    let out_dir = PathBuf::from(env::var_os("OUT_DIR").ok_or("OUT_DIR is not set")?);
    let files = proto_files(Path::new(PACKAGE_DIR))?;

    let mut compiler = protox::Compiler::new([PROTO_ROOT])?;
    // Comments become rustdoc on the generated items, and stay in the
    // descriptor set for reflection clients that show them.
    compiler.include_source_info(true);
    // Reflection clients need the imported files too to resolve types.
    compiler.include_imports(true);
    compiler.open_files(&files)?;

    let encoded = compiler.encode_file_descriptor_set();
    fs::write(out_dir.join(DESCRIPTOR_SET_FILE), &encoded)?;

    // The imported well-known types stay in the set: prost needs their
    // descriptors to decide which derives our messages can have, and emits no
    // code for them (they map to `prost_types`).
    let fds = compiler.file_descriptor_set();
    // `src/lib.rs` includes `tapline.v1.rs` only: a file of ours in another
    // package would be generated into a file nobody includes.
    if let Some(f) = fds
        .file
        .iter()
        .find(|f| !f.package().starts_with("google.protobuf") && f.package() != PACKAGE)
    {
        return Err(format!("{}: package must be {PACKAGE}", f.name()).into());
    }

    tonic_prost_build::configure()
        // Maps in generated structs are BTreeMaps: stable key order in
        // Debug output and in `taplinectl --json`.
        .btree_map(".")
        // Tap payloads as `bytes::Bytes`: the server can hand out slices of
        // one buffer without copying each packet.
        .bytes(".tapline.v1.TapPacket.data")
        .extern_path(TIMESTAMP_PATH.0, TIMESTAMP_PATH.1)
        .compile_fds(fds)?;

    // Proto3 JSON for every message of the package. Default values are
    // emitted (grpcurl's -emit-defaults): a counter at zero is "0", not a
    // missing key, so scripts never need a fallback. Unknown fields are
    // errors when parsing (a misspelt key in a chain spec file is caught).
    pbjson_build::Builder::new()
        .register_descriptors(&encoded)?
        .out_dir(&out_dir)
        .btree_map(["."])
        .emit_fields()
        .extern_path(TIMESTAMP_PATH.0, TIMESTAMP_PATH.1)
        .build(&[format!(".{PACKAGE}")])?;
    Ok(())
}

/// The `.proto` files of `dir`, sorted so that the output is reproducible.
fn proto_files(dir: &Path) -> Result<Vec<PathBuf>, Box<dyn Error>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| format!("reading {}: {e}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|ext| ext == "proto") {
            files.push(path);
        }
    }
    if files.is_empty() {
        return Err(format!("no .proto file in {}", dir.display()).into());
    }
    files.sort();
    Ok(files)
}
