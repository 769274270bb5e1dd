//! Exec probes through the runtime's `ExecSync`.

use kubelet_core::go_duration;
use std::time::Duration;

use kubelet_core::{ContainerExec, ExecResult, ProbeOutcome, Result, RuntimeErrorKind};

/// Upstream's `maxReadLength`: at most 10 KiB of the command's output is kept.
const MAX_OUTPUT: usize = 10 * 1024;

/// Runs `command` in the container; exit code 0 passes, any other fails with the
/// command's output (stdout then stderr, at most 10 KiB). A runtime deadline is a failure
/// with upstream's text; other runtime errors are returned (upstream's `Unknown`).
pub(crate) async fn probe(
    runtime: &dyn ContainerExec,
    container_id: &str,
    command: &[String],
    timeout: Duration,
) -> Result<ProbeOutcome> {
    match runtime.exec_sync(container_id, command, timeout).await {
        Ok(result) if result.exit_code == 0 => Ok(ProbeOutcome::Success),
        Ok(result) => Ok(ProbeOutcome::Failure(combined_output(&result))),
        Err(e) if e.runtime_kind() == Some(RuntimeErrorKind::DeadlineExceeded) => {
            Ok(ProbeOutcome::Failure(timed_out_message(command, timeout)))
        }
        Err(e) => Err(e),
    }
}

fn combined_output(result: &ExecResult) -> String {
    let mut data: Vec<u8> = Vec::with_capacity(result.stdout.len() + result.stderr.len());
    data.extend_from_slice(&result.stdout);
    data.extend_from_slice(&result.stderr);
    data.truncate(MAX_OUTPUT);
    String::from_utf8_lossy(&data).into_owned()
}

/// Upstream cri-client's `ErrCommandTimedOut` wrapping:
/// `command timed out: "cat /tmp/x" timed out after 1s`.
fn timed_out_message(command: &[String], timeout: Duration) -> String {
    format!(
        "command timed out: {:?} timed out after {}",
        command.join(" "),
        go_duration(timeout)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_stdout_then_stderr_capped_at_10_kib() {
        let result = ExecResult {
            stdout: b"out ".to_vec(),
            stderr: b"err".to_vec(),
            exit_code: 1,
        };
        assert_eq!(combined_output(&result), "out err");
        let big = ExecResult {
            stdout: vec![b'a'; 20_000],
            stderr: b"tail".to_vec(),
            exit_code: 1,
        };
        assert_eq!(combined_output(&big).len(), MAX_OUTPUT);
    }
}
