//! The file and URL sources against a real directory (inotify) and a real HTTP server
//! on 127.0.0.1.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kubelet_pod_manager::source::{
    CONFIG_HASH_ANNOTATION, CONFIG_SEEN_ANNOTATION, CONFIG_SOURCE_ANNOTATION, FileSource,
    PodChange, PodSet, UrlSource,
};
use kubelet_pod_manager::{Error, PodSource, SourceUpdate};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

const NODE: &str = "node-1";
/// How long to wait for a snapshot that must come. Generous: CI machines are busy.
const SOON: Duration = Duration::from_secs(10);
/// How long to watch for a snapshot that must not come: several re-lists or fetches
/// at the short frequencies these tests use, and more than the file source's settle time.
const QUIET: Duration = Duration::from_millis(500);
/// A check frequency so long that only inotify can explain a prompt snapshot.
const NEVER: Duration = Duration::from_secs(3600);

fn manifest(name: &str, image: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers:\n  - name: main\n    image: {image}\n"
    )
}

fn manifest_json(name: &str, image: &str) -> String {
    format!(
        r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "{name}"}},
  "spec": {{"containers": [{{"name": "main", "image": "{image}"}}]}}}}"#
    )
}

/// Writes a file the way careful tools do, complete or not at all: into a hidden
/// temporary file (which the source ignores), renamed into place. Tests that edit in
/// place say so.
fn write(dir: &Path, name: &str, content: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, content).unwrap_or_else(|e| panic!("writing {name}: {e}"));
    std::fs::rename(&tmp, dir.join(name)).unwrap_or_else(|e| panic!("renaming {name}: {e}"));
}

/// Aborts the spawned source when the test ends, whatever the outcome.
struct Task(JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn start_file_source(path: &Path, every: Duration) -> (mpsc::Receiver<SourceUpdate>, Task) {
    let (tx, rx) = mpsc::channel(8);
    let source = FileSource::new(path, NODE).with_check_frequency(every);
    (rx, Task(tokio::spawn(source.run(tx))))
}

async fn next(rx: &mut mpsc::Receiver<SourceUpdate>) -> SourceUpdate {
    match tokio::time::timeout(SOON, rx.recv()).await {
        Ok(Some(update)) => update,
        Ok(None) => panic!("source stopped"),
        Err(_) => panic!("no snapshot within {SOON:?}"),
    }
}

/// The first snapshot satisfying `done`: a file edited in place may be read half
/// written when the machine is slow, giving an intermediate snapshot first.
async fn next_until(
    rx: &mut mpsc::Receiver<SourceUpdate>,
    done: impl Fn(&SourceUpdate) -> bool,
) -> SourceUpdate {
    let deadline = tokio::time::Instant::now() + SOON;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(update)) if done(&update) => return update,
            Ok(Some(_)) => {}
            Ok(None) => panic!("source stopped"),
            Err(_) => panic!("no matching snapshot within {SOON:?}"),
        }
    }
}

async fn assert_quiet(rx: &mut mpsc::Receiver<SourceUpdate>) {
    if let Ok(update) = tokio::time::timeout(QUIET, rx.recv()).await {
        panic!("unexpected snapshot: {update:?}");
    }
}

fn names(update: &SourceUpdate) -> Vec<&str> {
    update
        .pods
        .iter()
        .map(|p| p.metadata.name.as_deref().unwrap_or(""))
        .collect()
}

fn uid(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or("")
}

fn annotation<'a>(pod: &'a Pod, key: &str) -> &'a str {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map_or("", String::as_str)
}

fn image(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.as_deref())
        .unwrap_or("")
}

#[tokio::test]
async fn bad_files_are_rejected_by_name_and_good_ones_run() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    write(dir.path(), "web.yaml", &manifest("web", "nginx:1.27"));
    write(dir.path(), "api.json", &manifest_json("api", "busybox"));
    write(
        dir.path(),
        "broken.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: [x\n",
    );
    write(
        dir.path(),
        "invalid.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: invalid\nspec:\n  containers:\n  - name: main\n",
    );
    write(dir.path(), ".hidden.yaml", &manifest("hidden", "nginx"));
    std::fs::create_dir(dir.path().join("old")).unwrap_or_else(|e| panic!("{e}"));

    let (mut rx, _task) = start_file_source(dir.path(), NEVER);
    let update = next(&mut rx).await;
    assert_eq!(update.source, PodSource::File);
    assert_eq!(
        names(&update),
        ["api-node-1", "web-node-1"],
        "sorted by file name"
    );
    for pod in &update.pods {
        assert_eq!(annotation(pod, CONFIG_SOURCE_ANNOTATION), "file");
        assert_eq!(annotation(pod, CONFIG_HASH_ANNOTATION), uid(pod));
        assert!(!annotation(pod, CONFIG_SEEN_ANNOTATION).is_empty());
    }

    let rejected: Vec<(String, String)> = update
        .rejected
        .iter()
        .map(|r| {
            let name = Path::new(&r.path)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned());
            (name.unwrap_or_default(), r.reason.clone())
        })
        .collect();
    assert_eq!(rejected.len(), 3, "{rejected:?}");
    assert_eq!(rejected[0].0, "broken.yaml");
    assert!(
        rejected[0].1.starts_with("couldn't parse as pod: "),
        "{}",
        rejected[0].1
    );
    assert!(rejected[0].1.contains("line 4 column"), "{}", rejected[0].1);
    assert_eq!(
        rejected[1],
        (
            "invalid.yaml".to_owned(),
            "pod default/invalid-node-1: invalid spec.containers[0].image: Required value"
                .to_owned()
        )
    );
    assert_eq!(rejected[2].0, "old");
    assert_eq!(
        rejected[2].1,
        "is a directory; manifests in subdirectories are not read"
    );
    let full = Path::new(&update.rejected[1].path);
    assert_eq!(full, dir.path().join("invalid.yaml"), "paths are full");
}

#[tokio::test]
async fn edits_renames_and_removals_are_sent_promptly() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    write(dir.path(), "web.yaml", &manifest("web", "nginx:1.26"));
    let (mut rx, _task) = start_file_source(dir.path(), NEVER);
    let first = next(&mut rx).await;
    assert_eq!(names(&first), ["web-node-1"]);
    let first_uid = uid(&first.pods[0]).to_owned();

    // Edit in place: a new version is a new pod (new UID and hash), as upstream.
    std::fs::write(dir.path().join("web.yaml"), manifest("web", "nginx:1.27"))
        .unwrap_or_else(|e| panic!("{e}"));
    let edited = next_until(&mut rx, |u| {
        u.pods.first().is_some_and(|p| image(p) == "nginx:1.27")
    })
    .await;
    assert_eq!(names(&edited), ["web-node-1"]);
    assert_eq!(image(&edited.pods[0]), "nginx:1.27");
    let edited_uid = uid(&edited.pods[0]).to_owned();
    assert_ne!(edited_uid, first_uid);
    assert_eq!(
        annotation(&edited.pods[0], CONFIG_HASH_ANNOTATION),
        edited_uid
    );

    // Hidden files (editor swap files) are not manifests and cause no snapshot.
    std::fs::write(dir.path().join(".web.yaml.swp"), "not yaml: [")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_quiet(&mut rx).await;

    // A new file is added beside it.
    write(dir.path(), "db.json", &manifest_json("db", "postgres:17"));
    let added = next(&mut rx).await;
    assert_eq!(names(&added), ["db-node-1", "web-node-1"]);

    // Renaming a file changes its path, which is part of the UID.
    std::fs::rename(dir.path().join("db.json"), dir.path().join("store.json"))
        .unwrap_or_else(|e| panic!("{e}"));
    let renamed = next(&mut rx).await;
    assert_eq!(names(&renamed), ["db-node-1", "web-node-1"]);
    assert_ne!(uid(&renamed.pods[0]), uid(&added.pods[0]));

    // Breaking a file rejects it and removes its pod; the other pod stays.
    write(
        dir.path(),
        "store.json",
        "{\"apiVersion\": \"v1\", \"kind\": \"Pod\",",
    );
    let broken = next(&mut rx).await;
    assert_eq!(names(&broken), ["web-node-1"]);
    assert_eq!(
        uid(&broken.pods[0]),
        edited_uid,
        "the other pod is unaffected"
    );
    assert_eq!(broken.rejected.len(), 1);
    assert!(broken.rejected[0].path.ends_with("store.json"));

    // Removing files removes their pods and rejections.
    std::fs::remove_file(dir.path().join("store.json")).unwrap_or_else(|e| panic!("{e}"));
    let removed = next(&mut rx).await;
    assert_eq!(names(&removed), ["web-node-1"]);
    assert!(removed.rejected.is_empty());
    std::fs::remove_file(dir.path().join("web.yaml")).unwrap_or_else(|e| panic!("{e}"));
    let empty = next(&mut rx).await;
    assert!(empty.pods.is_empty());
}

#[tokio::test]
async fn unchanged_relists_send_nothing() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    write(dir.path(), "web.yaml", &manifest("web", "nginx"));
    write(dir.path(), "bad.yaml", "kind: Pod\n");
    let (mut rx, _task) = start_file_source(dir.path(), Duration::from_millis(20));
    let first = next(&mut rx).await;
    assert_eq!(names(&first), ["web-node-1"]);
    assert_eq!(first.rejected.len(), 1);
    assert_eq!(
        first.rejected[0].reason,
        "couldn't parse as pod: Object 'apiVersion' is missing"
    );
    // About 25 re-lists, none of which may send anything.
    assert_quiet(&mut rx).await;
}

#[tokio::test]
async fn relist_catches_changes_inotify_cannot_see() {
    // The manifest is a symlink to a file in another directory (as configuration
    // management sometimes lays them out): writing the target raises no event in the
    // watched directory, so only the periodic re-list can notice.
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let elsewhere = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    write(elsewhere.path(), "web.yaml", &manifest("web", "nginx:1"));
    std::os::unix::fs::symlink(
        elsewhere.path().join("web.yaml"),
        dir.path().join("web.yaml"),
    )
    .unwrap_or_else(|e| panic!("{e}"));

    let (mut rx, _task) = start_file_source(dir.path(), Duration::from_millis(50));
    let first = next(&mut rx).await;
    assert_eq!(image(&first.pods[0]), "nginx:1");
    write(elsewhere.path(), "web.yaml", &manifest("web", "nginx:2"));
    let second = next(&mut rx).await;
    assert_eq!(image(&second.pods[0]), "nginx:2");
    assert_ne!(uid(&second.pods[0]), uid(&first.pods[0]));
}

#[tokio::test]
async fn a_missing_directory_is_reported_empty_then_picked_up() {
    let parent = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dir = parent.path().join("manifests");
    let (mut rx, _task) = start_file_source(&dir, NEVER);
    let empty = next(&mut rx).await;
    assert!(empty.pods.is_empty() && empty.rejected.is_empty());

    std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
    write(&dir, "web.yaml", &manifest("web", "nginx"));
    // Found by the one-second retry of the watch, not the (hour-long) re-list.
    let found = next(&mut rx).await;
    assert_eq!(names(&found), ["web-node-1"]);

    // Deleting the directory empties the source again; recreating it is noticed again.
    std::fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let gone = next(&mut rx).await;
    assert!(gone.pods.is_empty());
    std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
    write(&dir, "web.yaml", &manifest("web", "nginx"));
    let back = next(&mut rx).await;
    assert_eq!(names(&back), ["web-node-1"]);
    assert_eq!(
        uid(&back.pods[0]),
        uid(&found.pods[0]),
        "same manifest, same UID"
    );
}

#[tokio::test]
async fn a_single_file_path_replaced_atomically() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = dir.path().join("static-pod.yaml");
    write(dir.path(), "static-pod.yaml", &manifest("solo", "nginx:1"));
    let (mut rx, _task) = start_file_source(&file, NEVER);
    let first = next(&mut rx).await;
    assert_eq!(names(&first), ["solo-node-1"]);

    // `write` renames a new file over the watched one, as editors and configuration
    // tools do: the watch must follow to the new file.
    write(dir.path(), "static-pod.yaml", &manifest("solo", "nginx:2"));
    let second = next(&mut rx).await;
    assert_eq!(image(&second.pods[0]), "nginx:2");

    write(dir.path(), "static-pod.yaml", &manifest("solo", "nginx:3"));
    let third = next(&mut rx).await;
    assert_eq!(image(&third.pods[0]), "nginx:3");
}

#[tokio::test]
async fn the_source_stops_when_the_receiver_is_dropped() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (tx, rx) = mpsc::channel(1);
    let task = tokio::spawn(
        FileSource::new(dir.path(), NODE)
            .with_check_frequency(NEVER)
            .run(tx),
    );
    drop(rx);
    let ended = tokio::time::timeout(SOON, task).await;
    assert!(matches!(ended, Ok(Ok(()))), "{ended:?}");
}

#[tokio::test]
async fn file_snapshots_drive_a_pod_set() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    write(dir.path(), "web.yaml", &manifest("web", "nginx:1"));
    let (mut rx, _task) = start_file_source(dir.path(), NEVER);
    let mut set = PodSet::new();

    let changes = set.apply(next(&mut rx).await);
    assert!(matches!(&changes[..], [PodChange::Added(_)]), "{changes:?}");
    let old_uid = changes[0].uid().to_owned();

    write(dir.path(), "web.yaml", &manifest("web", "nginx:2"));
    let changes = set.apply(next(&mut rx).await);
    match &changes[..] {
        [PodChange::Removed(old), PodChange::Added(new)] => {
            assert_eq!(uid(old), old_uid);
            assert_eq!(image(new), "nginx:2");
        }
        other => panic!("expected the old pod replaced, got {other:?}"),
    }
    assert_eq!(set.len(), 1);
}

// --- URL source ---

/// What the test server answers, and what it saw.
#[derive(Default)]
struct ServerState {
    status: u16,
    body: String,
    requests: usize,
    last_request: String,
}

/// A minimal HTTP/1.1 server on 127.0.0.1 answering every request with the current
/// status and body, then closing the connection.
struct Server {
    url: String,
    state: Arc<Mutex<ServerState>>,
    _task: Task,
}

impl Server {
    async fn start(status: u16, body: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let state = Arc::new(Mutex::new(ServerState {
            status,
            body: body.to_owned(),
            ..ServerState::default()
        }));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let response = {
                    let mut s = shared.lock().unwrap_or_else(|e| e.into_inner());
                    s.requests += 1;
                    s.last_request = String::from_utf8_lossy(&request).into_owned();
                    let reason = match s.status {
                        200 => "OK",
                        404 => "Not Found",
                        _ => "Error",
                    };
                    format!(
                        "HTTP/1.1 {} {reason}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                        s.status,
                        s.body.len(),
                        s.body
                    )
                };
                let _ = conn.write_all(response.as_bytes()).await;
                let _ = conn.shutdown().await;
            }
        });
        Self {
            url: format!("http://{addr}/pods"),
            state,
            _task: Task(task),
        }
    }

    fn set(&self, status: u16, body: &str) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.status = status;
        s.body = body.to_owned();
    }

    fn requests(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .requests
    }

    fn last_request(&self) -> String {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .last_request
            .clone()
    }
}

fn start_url_source(source: UrlSource) -> (mpsc::Receiver<SourceUpdate>, Task) {
    let (tx, rx) = mpsc::channel(8);
    let source = source.with_check_frequency(Duration::from_millis(20));
    (rx, Task(tokio::spawn(source.run(tx))))
}

#[tokio::test]
async fn url_single_pod_with_headers() {
    let server = Server::start(200, &manifest("web", "nginx")).await;
    let source = UrlSource::new(server.url.clone(), NODE)
        .and_then(|s| s.with_header("X-Token", "secret-1"))
        .unwrap_or_else(|e| panic!("{e}"));
    let (mut rx, _task) = start_url_source(source);
    let update = next(&mut rx).await;
    assert_eq!(update.source, PodSource::Http);
    assert_eq!(names(&update), ["web-node-1"]);
    assert!(update.rejected.is_empty());
    let pod = &update.pods[0];
    assert_eq!(annotation(pod, CONFIG_SOURCE_ANNOTATION), "http");
    assert_eq!(annotation(pod, CONFIG_HASH_ANNOTATION), uid(pod));
    assert!(
        pod.spec
            .as_ref()
            .and_then(|s| s.tolerations.as_ref())
            .is_none()
    );
    let request = server.last_request().to_ascii_lowercase();
    assert!(request.starts_with("get /pods http/1.1"), "{request}");
    assert!(request.contains("x-token: secret-1"), "{request}");

    // The same body fetched again and again sends nothing.
    let before = server.requests();
    assert_quiet(&mut rx).await;
    assert!(server.requests() > before + 3, "the URL is polled");

    // A changed body is a new pod version.
    server.set(200, &manifest("web", "nginx:1.27"));
    let changed = next(&mut rx).await;
    assert_eq!(image(&changed.pods[0]), "nginx:1.27");
    assert_ne!(uid(&changed.pods[0]), uid(pod));
}

#[tokio::test]
async fn url_pod_list_rejects_only_the_bad_item() {
    let list = r#"{"apiVersion": "v1", "kind": "PodList", "items": [
        {"metadata": {"name": "a"}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}},
        {"metadata": {"name": "b"}, "spec": {"containers": [{"name": "c"}]}},
        {"metadata": {"name": "c"}, "spec": {"containers": [{"name": "c", "image": "redis"}]}}
    ]}"#;
    let server = Server::start(200, list).await;
    let source = UrlSource::new(server.url.clone(), NODE).unwrap_or_else(|e| panic!("{e}"));
    let (mut rx, _task) = start_url_source(source);
    let update = next(&mut rx).await;
    assert_eq!(names(&update), ["a-node-1", "c-node-1"]);
    assert_eq!(update.rejected.len(), 1);
    assert_eq!(update.rejected[0].path, server.url);
    assert_eq!(
        update.rejected[0].reason,
        "items[1]: pod default/b-node-1: invalid spec.containers[0].image: Required value"
    );
}

#[tokio::test]
async fn url_errors_name_the_url_and_keep_the_last_good_pods() {
    let server = Server::start(404, "no such thing").await;
    let source = UrlSource::new(server.url.clone(), NODE).unwrap_or_else(|e| panic!("{e}"));
    let (mut rx, _task) = start_url_source(source);

    // Before any good fetch, failures are logged only: the source is not "seen".
    assert_quiet(&mut rx).await;
    assert!(server.requests() > 3);

    server.set(200, &manifest("web", "nginx"));
    let good = next(&mut rx).await;
    assert_eq!(names(&good), ["web-node-1"]);

    server.set(404, "gone");
    let failed = next(&mut rx).await;
    assert_eq!(failed.pods, good.pods, "the last good pods stay");
    assert_eq!(failed.rejected.len(), 1);
    assert_eq!(failed.rejected[0].path, server.url);
    assert_eq!(
        failed.rejected[0].reason,
        format!("{}: 404 Not Found", server.url)
    );
    // The same failure again sends nothing.
    assert_quiet(&mut rx).await;

    // A body that is no pod at all is treated like a failure.
    server.set(200, "just some text");
    let garbage = next(&mut rx).await;
    assert_eq!(garbage.pods, good.pods);
    assert!(
        garbage.rejected[0].reason.starts_with(&format!(
            "{}: couldn't parse as pod or pod list: ",
            server.url
        )),
        "{}",
        garbage.rejected[0].reason
    );

    // Recovery clears the error; the pods never changed, so neither does their UID or
    // first-seen time.
    server.set(200, &manifest("web", "nginx"));
    let recovered = next(&mut rx).await;
    assert_eq!(recovered.pods, good.pods);
    assert!(recovered.rejected.is_empty());

    // An empty body means no pods.
    server.set(200, "");
    let empty = next(&mut rx).await;
    assert!(empty.pods.is_empty());
    assert_eq!(
        empty.rejected[0].reason,
        format!("zero-length data received from {}", server.url)
    );
}

#[tokio::test]
async fn url_connection_errors_name_the_url() {
    let server = Server::start(200, &manifest("web", "nginx")).await;
    let url = server.url.clone();
    let source = UrlSource::new(url.clone(), NODE).unwrap_or_else(|e| panic!("{e}"));
    let (mut rx, _task) = start_url_source(source);
    let good = next(&mut rx).await;
    assert_eq!(names(&good), ["web-node-1"]);
    drop(server);
    let failed = next(&mut rx).await;
    assert_eq!(failed.pods, good.pods);
    let reason = &failed.rejected[0].reason;
    assert!(reason.starts_with(&format!("{url}: ")), "{reason}");
    assert!(reason.to_lowercase().contains("connect"), "{reason}");
}

#[test]
fn url_source_accepts_only_http() {
    let err = UrlSource::new("https://example.invalid/pods", NODE).err();
    assert!(
        matches!(&err, Some(Error::Manifest { path, .. }) if path == "https://example.invalid/pods"),
        "{err:?}"
    );
    assert_eq!(
        err.map(|e| e.to_string()).as_deref(),
        Some("manifest https://example.invalid/pods: https manifest URLs are not supported yet")
    );
    let err = UrlSource::new("http://127.0.0.1/pods", NODE)
        .and_then(|s| s.with_header("bad header", "x"))
        .err();
    assert!(matches!(err, Some(Error::Manifest { .. })), "{err:?}");
}
