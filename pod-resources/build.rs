//! Generates the PodResources v1 messages, server and client from upstream's proto
//! (needs `protoc`, as the CRI bindings do).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/podresources_v1.proto");
    tonic_prost_build::configure().compile_protos(&["proto/podresources_v1.proto"], &["proto/"])?;
    Ok(())
}
