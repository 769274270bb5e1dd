//! Generates the device plugin v1beta1 messages, servers and clients from upstream's
//! proto (needs `protoc`, as the CRI bindings do).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/deviceplugin_v1beta1.proto");
    tonic_prost_build::configure()
        .compile_protos(&["proto/deviceplugin_v1beta1.proto"], &["proto/"])?;
    Ok(())
}
