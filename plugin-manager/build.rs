//! Generates the pluginregistration v1 messages, server and client from upstream's proto
//! (needs `protoc`, as the CRI bindings do).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/pluginregistration_v1.proto");
    tonic_prost_build::configure()
        .compile_protos(&["proto/pluginregistration_v1.proto"], &["proto/"])?;
    Ok(())
}
