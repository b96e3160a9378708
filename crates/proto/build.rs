//! Compiles the `.proto` files with protox (pure Rust, so no system `protoc`) and writes the
//! descriptor set that server reflection serves.

use std::path::PathBuf;

use prost::Message;

const PROTO_ROOT: &str = "../../proto";
const FILES: &[&str] = &[
    "roster/identity/v1/resources.proto",
    "roster/identity/v1/account_service.proto",
    "roster/identity/v1/user_service.proto",
    "roster/identity/v1/role_service.proto",
    "roster/identity/v1/directory_service.proto",
    "roster/licensing/v1/resources.proto",
    "roster/licensing/v1/license_service.proto",
    "roster/licensing/v1/content_service.proto",
    "roster/licensing/v1/billing_service.proto",
    "roster/operations/v1/resources.proto",
    "roster/operations/v1/operations_service.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={PROTO_ROOT}");
    for file in FILES {
        println!("cargo:rerun-if-changed={PROTO_ROOT}/{file}");
    }
    let descriptors = protox::compile(FILES, [PROTO_ROOT])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("roster_descriptor.bin"), descriptors.encode_to_vec())?;
    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(descriptors)?;
    Ok(())
}
