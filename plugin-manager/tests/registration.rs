//! The plugin manager against in-process plugins serving pluginregistration v1 on unix
//! sockets in a temporary `plugins_registry`: registration, the plugin told the outcome
//! with upstream's messages, deregistration when the socket goes.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use kubelet_plugin_manager::proto::v1::registration_server::{Registration, RegistrationServer};
use kubelet_plugin_manager::proto::v1::{
    InfoRequest, PluginInfo, RegistrationStatus, RegistrationStatusResponse,
};
use kubelet_plugin_manager::{CSI_PLUGIN, HandlerError, PluginHandler, PluginManager};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status};

/// A plugin: its info, and the statuses it is told.
struct FakePlugin {
    info: PluginInfo,
    told: mpsc::UnboundedSender<RegistrationStatus>,
}

#[tonic::async_trait]
impl Registration for FakePlugin {
    async fn get_info(&self, _: Request<InfoRequest>) -> Result<Response<PluginInfo>, Status> {
        if self.info.name.starts_with("hang") {
            std::future::pending::<()>().await;
        }
        Ok(Response::new(self.info.clone()))
    }

    async fn notify_registration_status(
        &self,
        request: Request<RegistrationStatus>,
    ) -> Result<Response<RegistrationStatusResponse>, Status> {
        let _ = self.told.send(request.into_inner());
        Ok(Response::new(RegistrationStatusResponse {}))
    }
}

/// Serves a plugin of `kind` named `name` on `socket`; the statuses it is told.
fn serve_plugin(
    socket: &Path,
    kind: &str,
    name: &str,
) -> (
    tokio::task::JoinHandle<()>,
    mpsc::UnboundedReceiver<RegistrationStatus>,
) {
    let (told, statuses) = mpsc::unbounded_channel();
    let plugin = FakePlugin {
        info: PluginInfo {
            r#type: kind.to_owned(),
            name: name.to_owned(),
            endpoint: String::new(),
            supported_versions: vec!["1.0.0".to_owned()],
        },
        told,
    };
    let listener = tokio::net::UnixListener::bind(socket).expect("bind the plugin socket");
    let task = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(RegistrationServer::new(plugin))
            .serve_with_incoming(UnixListenerStream::new(listener))
            .await;
    });
    (task, statuses)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    Validate(String, String),
    Register(String, String),
    Deregister(String),
}

/// A handler that records its calls and refuses as told.
#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<Call>>,
    refuse_validation: bool,
    refuse_registration: bool,
}

impl Recorder {
    fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("calls").clone()
    }
}

#[async_trait]
impl PluginHandler for Recorder {
    async fn validate(&self, name: &str, endpoint: &str, _: &[String]) -> Result<(), HandlerError> {
        self.calls
            .lock()
            .expect("calls")
            .push(Call::Validate(name.to_owned(), endpoint.to_owned()));
        if self.refuse_validation {
            return Err("version 1.0.0 is too old".into());
        }
        Ok(())
    }

    async fn register(&self, name: &str, endpoint: &str, _: &[String]) -> Result<(), HandlerError> {
        self.calls
            .lock()
            .expect("calls")
            .push(Call::Register(name.to_owned(), endpoint.to_owned()));
        if self.refuse_registration {
            return Err("NodeGetInfo failed".into());
        }
        Ok(())
    }

    async fn deregister(&self, name: &str, _: &str) {
        self.calls
            .lock()
            .expect("calls")
            .push(Call::Deregister(name.to_owned()));
    }
}

async fn next_status(
    statuses: &mut mpsc::UnboundedReceiver<RegistrationStatus>,
) -> RegistrationStatus {
    tokio::time::timeout(Duration::from_secs(20), statuses.recv())
        .await
        .expect("the plugin is told how its registration went")
        .expect("status")
}

async fn wait_for(what: &str, check: impl Fn() -> bool) {
    for _ in 0..200 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: not within 10s");
}

fn start(dir: &Path, handler: Arc<Recorder>) -> tokio::task::JoinHandle<()> {
    let manager = PluginManager::new(dir).with_handler(CSI_PLUGIN, handler);
    tokio::spawn(async move {
        manager.run().await.expect("the plugin manager runs");
    })
}

fn socket(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

#[tokio::test]
async fn a_plugin_registers_and_deregisters_with_its_socket() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("plugins_registry");
    std::fs::create_dir_all(&dir).expect("dir");
    // One socket before the manager starts, one after.
    let early = socket(&dir, "early-reg.sock");
    let (_early_task, mut early_statuses) =
        serve_plugin(&early, CSI_PLUGIN, "early.csi.example.com");
    std::fs::write(dir.join(".hidden.sock"), "not a socket").expect("hidden file");
    let handler = Arc::new(Recorder::default());
    let manager = start(&dir, handler.clone());
    let status = next_status(&mut early_statuses).await;
    assert!(status.plugin_registered, "{status:?}");
    assert_eq!(status.error, "");

    let late = socket(&dir, "late-reg.sock");
    let (late_task, mut late_statuses) = serve_plugin(&late, CSI_PLUGIN, "late.csi.example.com");
    assert!(next_status(&mut late_statuses).await.plugin_registered);
    let endpoint = late.to_string_lossy().into_owned();
    // An empty endpoint in the plugin's info means its registration socket, as upstream.
    assert!(
        handler.calls().contains(&Call::Register(
            "late.csi.example.com".into(),
            endpoint.clone()
        )),
        "{:?}",
        handler.calls()
    );

    late_task.abort();
    std::fs::remove_file(&late).expect("remove the socket");
    wait_for("the late plugin deregistered", || {
        handler
            .calls()
            .contains(&Call::Deregister("late.csi.example.com".into()))
    })
    .await;
    assert!(
        !handler
            .calls()
            .contains(&Call::Deregister("early.csi.example.com".into()))
    );
    let registrations = handler
        .calls()
        .iter()
        .filter(|c| matches!(c, Call::Register(..)))
        .count();
    assert_eq!(registrations, 2, "{:?}", handler.calls());
    manager.abort();
}

#[tokio::test]
async fn plugins_are_told_why_they_were_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_owned();
    let handler = Arc::new(Recorder {
        refuse_registration: true,
        ..Recorder::default()
    });
    let manager = start(&dir, handler.clone());

    // A type nobody handles.
    let unknown = socket(&dir, "dra-reg.sock");
    let (_unknown_task, mut unknown_statuses) =
        serve_plugin(&unknown, "DRAPlugin", "gpu.example.com");
    let status = next_status(&mut unknown_statuses).await;
    assert!(!status.plugin_registered);
    assert_eq!(
        status.error,
        format!(
            "RegisterPlugin error -- no handler registered for plugin type: DRAPlugin at socket {}",
            unknown.display()
        )
    );

    // The handler refuses to register: told once, not retried while the socket stays.
    let refused = socket(&dir, "refused-reg.sock");
    let (_refused_task, mut refused_statuses) =
        serve_plugin(&refused, CSI_PLUGIN, "refused.example.com");
    let status = next_status(&mut refused_statuses).await;
    assert!(!status.plugin_registered);
    assert_eq!(
        status.error,
        "RegisterPlugin error -- plugin registration failed with err: NodeGetInfo failed"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let attempts = handler
        .calls()
        .iter()
        .filter(|c| matches!(c, Call::Register(name, _) if name == "refused.example.com"))
        .count();
    assert_eq!(attempts, 1, "{:?}", handler.calls());
    manager.abort();
}

#[tokio::test]
async fn a_refused_validation_is_retried() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_owned();
    let handler = Arc::new(Recorder {
        refuse_validation: true,
        ..Recorder::default()
    });
    let manager = start(&dir, handler.clone());
    let path = socket(&dir, "old-reg.sock");
    let (_task, mut statuses) = serve_plugin(&path, CSI_PLUGIN, "old.example.com");
    let status = next_status(&mut statuses).await;
    assert_eq!(
        status.error,
        "RegisterPlugin error -- plugin validation failed with err: version 1.0.0 is too old"
    );
    // Backing off (500 ms, then 1 s): asked again, never registered.
    let again = next_status(&mut statuses).await;
    assert!(!again.plugin_registered);
    assert!(
        !handler
            .calls()
            .iter()
            .any(|c| matches!(c, Call::Register(..)))
    );
    manager.abort();
}

#[tokio::test]
async fn a_plugin_that_hangs_delays_no_other() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_owned();
    let handler = Arc::new(Recorder::default());
    let manager = start(&dir, handler.clone());
    let (_hanging, _) = serve_plugin(
        &socket(&dir, "hang-reg.sock"),
        CSI_PLUGIN,
        "hang.example.com",
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_good, mut statuses) = serve_plugin(
        &socket(&dir, "good-reg.sock"),
        CSI_PLUGIN,
        "good.example.com",
    );
    let status = tokio::time::timeout(Duration::from_secs(5), statuses.recv())
        .await
        .expect("registered while the other plugin hangs")
        .expect("status");
    assert!(status.plugin_registered);
    assert!(
        !handler
            .calls()
            .iter()
            .any(|c| matches!(c, Call::Validate(name, _) if name == "hang.example.com"))
    );
    manager.abort();
}
