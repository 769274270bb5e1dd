//! gRPC probes: `grpc.health.v1.Health/Check` over a plaintext HTTP/2 connection, with
//! upstream's (`pkg/probe/grpc`) outcomes and messages. The two messages of the health
//! protocol are declared here rather than generated from its proto.

use std::time::Duration;

use kubelet_core::ProbeOutcome;
use tonic::Code;
use tonic::codegen::http::uri::PathAndQuery;

use crate::http::USER_AGENT;
use crate::tcp::join_host_port;

/// `grpc.health.v1.HealthCheckRequest`.
#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckRequest {
    #[prost(string, tag = "1")]
    service: String,
}

/// `grpc.health.v1.HealthCheckResponse`.
#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckResponse {
    #[prost(enumeration = "ServingStatus", tag = "1")]
    status: i32,
}

/// `grpc.health.v1.HealthCheckResponse.ServingStatus`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
enum ServingStatus {
    Unknown = 0,
    Serving = 1,
    NotServing = 2,
    ServiceUnknown = 3,
}

impl ServingStatus {
    /// The enum value's name in the proto, as Go's `String()` prints it.
    fn proto_name(status: i32) -> String {
        match Self::try_from(status) {
            Ok(Self::Unknown) => "UNKNOWN".to_owned(),
            Ok(Self::Serving) => "SERVING".to_owned(),
            Ok(Self::NotServing) => "NOT_SERVING".to_owned(),
            Ok(Self::ServiceUnknown) => "SERVICE_UNKNOWN".to_owned(),
            Err(_) => status.to_string(),
        }
    }
}

/// Go's `%v` of a duration of whole or fractional seconds (`1s`, `1.5s`).
fn go_seconds(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

/// Checks `service` on `host:port` within `timeout` (connection and call together, as
/// upstream's one context).
pub(crate) async fn probe(host: &str, port: u16, service: &str, timeout: Duration) -> ProbeOutcome {
    let addr = join_host_port(host, port);
    let deadline = tokio::time::Instant::now() + timeout;
    let channel = match tokio::time::timeout_at(deadline, connect(&addr)).await {
        Ok(Ok(channel)) => channel,
        Ok(Err(cause)) => {
            return ProbeOutcome::Failure(format!(
                "error: failed to connect service at \"{addr}\": {cause}"
            ));
        }
        Err(_) => {
            return ProbeOutcome::Failure(format!(
                "timeout: failed to connect service \"{addr}\" within {}: context deadline \
                 exceeded",
                go_seconds(timeout)
            ));
        }
    };
    match tokio::time::timeout_at(deadline, check(channel, service)).await {
        Ok(outcome) => outcome,
        Err(_) => ProbeOutcome::Failure(format!(
            "timeout: health rpc did not complete within {}",
            go_seconds(timeout)
        )),
    }
}

async fn connect(addr: &str) -> Result<tonic::transport::Channel, String> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .and_then(|e| e.user_agent(USER_AGENT))
        .map_err(|e| e.to_string())?;
    endpoint.connect().await.map_err(|e| {
        std::error::Error::source(&e).map_or_else(|| e.to_string(), ToString::to_string)
    })
}

async fn check(channel: tonic::transport::Channel, service: &str) -> ProbeOutcome {
    let mut client = tonic::client::Grpc::new(channel);
    if let Err(e) = client.ready().await {
        return ProbeOutcome::Failure(format!("error: health rpc probe failed: {e}"));
    }
    let request = tonic::Request::new(HealthCheckRequest {
        service: service.to_owned(),
    });
    let path = PathAndQuery::from_static("/grpc.health.v1.Health/Check");
    let codec = tonic_prost::ProstCodec::<HealthCheckRequest, HealthCheckResponse>::default();
    match client.unary(request, path, codec).await {
        Ok(response) => {
            let status = response.into_inner().status;
            if status == ServingStatus::Serving as i32 {
                ProbeOutcome::Success
            } else {
                ProbeOutcome::Failure(format!(
                    "service unhealthy (responded with \"{}\")",
                    ServingStatus::proto_name(status)
                ))
            }
        }
        Err(status) if status.code() == Code::Unimplemented => ProbeOutcome::Failure(format!(
            "error: this server does not implement the grpc health protocol \
             (grpc.health.v1.Health): {}",
            status.message()
        )),
        Err(status) => ProbeOutcome::Failure(format!(
            "error: health rpc probe failed: rpc error: code = {:?} desc = {}",
            status.code(),
            status.message()
        )),
    }
}
