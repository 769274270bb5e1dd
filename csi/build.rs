//! Generates the CSI v1 messages, clients and servers from the CSI specification's
//! `csi.proto` (needs `protoc`, as the CRI bindings do).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/csi.proto");
    tonic_prost_build::configure().compile_protos(&["proto/csi.proto"], &["proto/"])?;
    Ok(())
}
