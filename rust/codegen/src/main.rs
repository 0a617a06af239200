//! `grimos-codegen`: the buf plugin that writes `gen/rust/src/gen` and, with the parameter
//! `openapi`, `gen/openapi`.
//!
//! buf hands it a `CodeGeneratorRequest` on stdin (with `strategy: all`, every file of the
//! module in one request, imports included). By default it runs tonic-prost-build (messages,
//! clients, servers) and pbjson-build (proto3 JSON serde impls) over the same descriptors and
//! answers with one `<package>.rs` and `<package>.serde.rs` per package, a `mod.rs` that nests
//! them under `pub mod` and `file_descriptor_set.rs` (the encoded set, imports and custom
//! options included, for server reflection). With `opt: openapi` it answers with
//! `grimos.openapi.json`, the OpenAPI 3.1 document of the HTTP/JSON surface ([`openapi`]),
//! whose HTTP behaviour beyond `google.api.http` comes from the table in [`http_rules`].
//!
//! It never writes outside the directory buf names, and its output depends only on the
//! request, so two machines with the same `Cargo.lock` produce byte-identical files.
//!
//! Well-known types map to `pbjson-types`, except `FieldMask` and `Timestamp`, which map to
//! `grimos_proto::wkt`: pbjson-types encodes a mask as `{"paths": [...]}` instead of the
//! canonical comma-separated string, and a timestamp with `+00:00` instead of `Z`.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::path::Path;

use prost::Message;
use prost_types::FileDescriptorSet;
use prost_types::compiler::code_generator_response::{Feature, File};
use prost_types::compiler::{CodeGeneratorRequest, CodeGeneratorResponse};

mod annotations;
mod binding;
mod gateway;
mod http_rules;
mod input_rules;
mod openapi;
mod types;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Extern paths shared by both generators. More specific paths win in prost-build and
/// pbjson-build alike, so two types go to our own `wkt` module and the rest to pbjson-types.
const EXTERN_PATHS: &[(&str, &str)] = &[
    (".google.protobuf", "::pbjson_types"),
    (".google.protobuf.FieldMask", "crate::wkt::FieldMask"),
    (".google.protobuf.Timestamp", "crate::wkt::Timestamp"),
];

fn main() {
    let response = match run() {
        Ok(response) => response,
        Err(error) => CodeGeneratorResponse {
            error: Some(error.to_string()),
            ..Default::default()
        },
    };
    let mut out = std::io::stdout().lock();
    if let Err(error) = out
        .write_all(&response.encode_to_vec())
        .and_then(|()| out.flush())
    {
        eprintln!("grimos-codegen: cannot write the response: {error}");
        std::process::exit(1);
    }
}

/// The request's files as buf encoded them. Decoding into `prost_types` drops what prost does
/// not know (custom options such as `google.api.http`), so these bytes are what the descriptor
/// set and the annotations are read from.
#[derive(Clone, PartialEq, Message)]
struct RawFiles {
    /// `CodeGeneratorRequest.proto_file`, each an encoded `FileDescriptorProto`.
    #[prost(bytes = "vec", repeated, tag = "15")]
    proto_file: Vec<Vec<u8>>,
}

fn run() -> Result<CodeGeneratorResponse> {
    let mut input = Vec::new();
    std::io::stdin().read_to_end(&mut input)?;
    let request = CodeGeneratorRequest::decode(input.as_slice())?;
    let raw = RawFiles::decode(input.as_slice())?.proto_file;
    if raw.len() != request.proto_file.len() {
        return Err("the request's files decode differently twice".into());
    }
    match request.parameter() {
        "" => rust(request, &raw),
        "openapi" => openapi_document(&request, &raw),
        other => Err(format!("unknown parameter {other:?}: give none (Rust) or `openapi`").into()),
    }
}

/// `grimos.openapi.json` for the files to generate.
fn openapi_document(
    request: &CodeGeneratorRequest,
    raw: &[Vec<u8>],
) -> Result<CodeGeneratorResponse> {
    let mut annotations = annotations::Annotations::default();
    for (file, bytes) in request.proto_file.iter().zip(raw) {
        annotations.add_file(file, bytes)?;
    }
    let document = openapi::document(&request.proto_file, &annotations, &request.file_to_generate)?;
    Ok(CodeGeneratorResponse {
        supported_features: Some(Feature::Proto3Optional as u64),
        file: vec![File {
            name: Some("grimos.openapi.json".to_owned()),
            content: Some(document),
            ..Default::default()
        }],
        ..Default::default()
    })
}

/// The Rust code: prost, tonic and pbjson output, `mod.rs` and the descriptor set.
fn rust(request: CodeGeneratorRequest, raw: &[Vec<u8>]) -> Result<CodeGeneratorResponse> {
    // Packages of the files buf asks for; imports (the well-known types) are only context.
    let packages: BTreeSet<String> = request
        .proto_file
        .iter()
        .filter(|file| request.file_to_generate.iter().any(|f| f == file.name()))
        .map(|file| file.package().to_owned())
        .collect();
    if packages.is_empty() {
        return Err("no files to generate".into());
    }
    // Reflection describes services; a set of messages alone (google.rpc) needs no descriptors.
    let has_services = request.proto_file.iter().any(|file| {
        request.file_to_generate.iter().any(|f| f == file.name()) && !file.service.is_empty()
    });
    let mut annotations = annotations::Annotations::default();
    for (file, bytes) in request.proto_file.iter().zip(raw) {
        annotations.add_file(file, bytes)?;
    }
    let gateways = gateway::files(&request.proto_file, &annotations, &request.file_to_generate)?;

    // The set as bytes, from the files' own bytes: re-encoding the decoded files would lose
    // their custom options.
    let mut fds_bytes = Vec::new();
    for file in raw {
        prost::encoding::bytes::encode(1, file, &mut fds_bytes);
    }
    let fds = FileDescriptorSet {
        file: request.proto_file,
    };

    let tmp = tempfile::tempdir()?;
    let out = tmp.path();

    let mut tonic = tonic_prost_build::configure()
        .out_dir(out)
        .build_client(true)
        .build_server(true)
        .build_transport(true)
        .compile_well_known_types(true)
        .emit_rerun_if_changed(false);
    for (proto, rust) in EXTERN_PATHS {
        tonic = tonic.extern_path(proto, rust);
    }
    tonic.compile_fds(fds)?;

    let mut pbjson = pbjson_build::Builder::new();
    pbjson.register_descriptors(&fds_bytes)?.out_dir(out);
    for (proto, rust) in EXTERN_PATHS {
        pbjson.extern_path(*proto, *rust);
    }
    let prefixes: Vec<String> = packages.iter().map(|p| format!(".{p}")).collect();
    pbjson.build(&prefixes)?;

    let mut files = Vec::new();
    for package in &packages {
        for name in [format!("{package}.rs"), format!("{package}.serde.rs")] {
            files.push(File {
                content: Some(read_generated(out, &name)?),
                name: Some(name),
                ..Default::default()
            });
        }
    }
    let gateway_packages: BTreeSet<String> = gateways.iter().map(|(p, _)| p.clone()).collect();
    for (package, source) in gateways {
        files.push(File {
            name: Some(format!("{package}.gateway.rs")),
            content: Some(source),
            ..Default::default()
        });
    }
    files.push(File {
        name: Some("mod.rs".to_owned()),
        content: Some(module_tree(&packages, &gateway_packages, has_services)),
        ..Default::default()
    });
    if has_services {
        files.push(File {
            name: Some("file_descriptor_set.rs".to_owned()),
            content: Some(descriptor_set_source(&fds_bytes)),
            ..Default::default()
        });
    }

    Ok(CodeGeneratorResponse {
        supported_features: Some(Feature::Proto3Optional as u64),
        file: files,
        ..Default::default()
    })
}

fn read_generated(dir: &Path, name: &str) -> Result<String> {
    std::fs::read_to_string(dir.join(name))
        .map_err(|error| format!("generator wrote no {name}: {error}").into())
}

/// `mod.rs`: one nested `pub mod` per package segment, `include!`-ing the package's files (its
/// gateway behind the `gateway` feature), and the descriptor set when there are services.
fn module_tree(
    packages: &BTreeSet<String>,
    gateways: &BTreeSet<String>,
    descriptors: bool,
) -> String {
    let mut src = String::from(
        "// @generated by grimos-codegen from proto/. Do not edit: run `just generate`.\n\n",
    );
    let mut open: Vec<&str> = Vec::new();
    for package in packages {
        let segments: Vec<&str> = package.split('.').collect();
        let common = open
            .iter()
            .zip(&segments)
            .take_while(|(a, b)| a == b)
            .count();
        while open.len() > common {
            open.pop();
            let _ = writeln!(src, "{}}}", "    ".repeat(open.len()));
        }
        for segment in &segments[common..] {
            let _ = writeln!(src, "{}pub mod {segment} {{", "    ".repeat(open.len()));
            open.push(segment);
        }
        let indent = "    ".repeat(open.len());
        let _ = writeln!(src, "{indent}include!(\"{package}.rs\");");
        let _ = writeln!(src, "{indent}include!(\"{package}.serde.rs\");");
        if gateways.contains(package) {
            let _ = writeln!(src, "{indent}#[cfg(feature = \"gateway\")]");
            let _ = writeln!(src, "{indent}include!(\"{package}.gateway.rs\");");
        }
    }
    while !open.is_empty() {
        open.pop();
        let _ = writeln!(src, "{}}}", "    ".repeat(open.len()));
    }
    if descriptors {
        src.push_str("\n/// The encoded `FileDescriptorSet` of the API, imports included.\n");
        src.push_str("pub mod descriptor {\n    include!(\"file_descriptor_set.rs\");\n}\n");
    }
    src
}

/// `file_descriptor_set.rs`: the encoded descriptor set as a byte-array constant (plugin
/// responses carry text only, so `include_bytes!` of a binary file is not an option).
fn descriptor_set_source(bytes: &[u8]) -> String {
    let mut src = String::from(
        "// @generated by grimos-codegen from proto/. Do not edit: run `just generate`.\n\n\
         /// Every file of the API and its imports, for `tonic-reflection`.\n\
         pub const FILE_DESCRIPTOR_SET: &[u8] = &[\n",
    );
    for chunk in bytes.chunks(16) {
        src.push_str("   ");
        for byte in chunk {
            let _ = write!(src, " {byte},");
        }
        src.push('\n');
    }
    src.push_str("];\n");
    src
}
