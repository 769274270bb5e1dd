//! `/logs/`: the node's log directory (`/var/log`) as upstream's kubelet serves it with
//! Go's `http.FileServer`: a directory is a listing of links (a path without its
//! trailing slash is redirected to it), a file is its content. Nothing outside the
//! directory is served: `..` is cleaned away as Go does, and a symlink leading out of
//! the directory is not found (the kernel resolves the path beneath the directory,
//! `openat2(RESOLVE_BENEATH)`, so a symlink swapped in meanwhile cannot lead out).

use std::fs::Metadata;
use std::os::fd::AsRawFd;
use std::path::{Component, Path, PathBuf};

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::{Response, StatusCode};
use tokio_stream::StreamExt;
use tokio_util::io::ReaderStream;

use crate::routes::{ApiBody, text};

fn not_found() -> Response<ApiBody> {
    text(
        StatusCode::NOT_FOUND,
        "text/plain; charset=utf-8",
        "404 page not found\n",
    )
}

/// The file or directory `request_path` (under `/logs`) names, relative to the log
/// directory, cleaned as Go's `path.Clean` (so `..` never climbs above it); `.` for the
/// directory itself.
fn resolve(request_path: &str) -> PathBuf {
    let rest = request_path.strip_prefix("/logs").unwrap_or(request_path);
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for component in Path::new(rest).components() {
        match component {
            Component::Normal(part) => parts.push(part),
            Component::ParentDir => {
                parts.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    if parts.is_empty() {
        return PathBuf::from(".");
    }
    parts.iter().collect()
}

/// [`resolve`], for the fuzz target.
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_resolve(request_path: &str) -> PathBuf {
    resolve(request_path)
}

/// Escapes text for HTML, as Go's `htmlReplacer`.
fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&#34;")
        .replace('\'', "&#39;")
}

/// Escapes a name for a link, as Go's `url.URL{Path: name}.String()` does for the usual
/// characters.
fn href_escape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for byte in name.bytes() {
        match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(byte as char)
            }
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

/// Opens `relative` (clean, no `..`) inside `root` with `openat2(RESOLVE_BENEATH)`: the
/// kernel resolves every symlink on the way and refuses any step out of `root`, so a
/// symlink swapped in between a check and the open cannot lead out either.
fn open_beneath(root: &Path, relative: &Path) -> std::io::Result<(std::fs::File, Metadata)> {
    use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
    let dir = std::fs::File::open(root)?;
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOCTTY)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let file = std::fs::File::from(openat2(&dir, relative, how)?);
    let metadata = file.metadata()?;
    Ok((file, metadata))
}

/// Answers `GET /logs/...` from `root`.
pub async fn serve(root: &Path, request_path: &str) -> Response<ApiBody> {
    let (root, relative) = (root.to_owned(), resolve(request_path));
    let opened = tokio::task::spawn_blocking(move || open_beneath(&root, &relative)).await;
    let (file, metadata) = match opened {
        Ok(Ok(opened)) => opened,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return text(
                StatusCode::FORBIDDEN,
                "text/plain; charset=utf-8",
                "403 Forbidden\n",
            );
        }
        Ok(Err(e)) => {
            tracing::debug!(path = request_path, error = %e, "not serving a /logs path");
            return not_found();
        }
        Err(_) => return not_found(),
    };
    if metadata.is_dir() {
        if !request_path.ends_with('/') {
            let location = format!(
                "{}/",
                request_path.rsplit('/').next().unwrap_or(request_path)
            );
            let mut response = text(
                StatusCode::MOVED_PERMANENTLY,
                "text/html; charset=utf-8",
                "",
            );
            if let Ok(value) = location.parse() {
                response
                    .headers_mut()
                    .insert(hyper::header::LOCATION, value);
            }
            return response;
        }
        return list(&file).await;
    }
    let stream =
        ReaderStream::new(tokio::fs::File::from_std(file)).map(|chunk| chunk.map(Frame::data));
    let mut response = Response::new(StreamBody::new(stream).boxed());
    let headers = response.headers_mut();
    if let Ok(value) = "text/plain; charset=utf-8".parse() {
        headers.insert(hyper::header::CONTENT_TYPE, value);
    }
    if let Ok(value) = metadata.len().to_string().parse() {
        headers.insert(hyper::header::CONTENT_LENGTH, value);
    }
    response
}

/// A directory listing as Go's `dirList`: sorted names, directories with a slash.
async fn list(dir: &std::fs::File) -> Response<ApiBody> {
    // The directory already opened, by its descriptor: not its path again.
    let by_descriptor = format!("/proc/self/fd/{}", dir.as_raw_fd());
    let mut entries = match tokio::fs::read_dir(by_descriptor).await {
        Ok(entries) => entries,
        Err(_) => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain; charset=utf-8",
                "Error reading directory\n",
            );
        }
    };
    let mut names = Vec::new();
    while let Ok(Some(entry)) = entries.next_entry().await {
        let mut name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type().await.is_ok_and(|t| t.is_dir()) {
            name.push('/');
        }
        names.push(name);
    }
    names.sort();
    let mut body = String::from(
        "<!doctype html>\n<meta name=\"viewport\" content=\"width=device-width\">\n<pre>\n",
    );
    for name in names {
        body.push_str(&format!(
            "<a href=\"{}\">{}</a>\n",
            href_escape(&name),
            html_escape(&name)
        ));
    }
    body.push_str("</pre>\n");
    text(
        StatusCode::OK,
        "text/html; charset=utf-8",
        Bytes::from(body),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(response: Response<ApiBody>) -> (StatusCode, String) {
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[test]
    fn paths_are_cleaned_as_go_does() {
        assert_eq!(resolve("/logs/"), PathBuf::from("."));
        assert_eq!(resolve("/logs/a/b.log"), PathBuf::from("a/b.log"));
        assert_eq!(
            resolve("/logs/../../etc/passwd"),
            PathBuf::from("etc/passwd")
        );
        assert_eq!(resolve("/logs/a/../b"), PathBuf::from("b"));
    }

    #[tokio::test]
    async fn serves_files_and_listings_inside_the_directory_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("log");
        std::fs::create_dir_all(root.join("pods")).expect("dirs");
        std::fs::write(root.join("syslog"), "line one\n").expect("file");
        std::fs::write(dir.path().join("secret"), "not for you").expect("file");
        std::os::unix::fs::symlink(dir.path().join("secret"), root.join("escape")).expect("link");

        let (status, text) = body(serve(&root, "/logs/").await).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            text,
            "<!doctype html>\n<meta name=\"viewport\" content=\"width=device-width\">\n<pre>\n\
             <a href=\"escape\">escape</a>\n<a href=\"pods/\">pods/</a>\n<a href=\"syslog\">syslog</a>\n</pre>\n"
        );
        assert_eq!(
            body(serve(&root, "/logs/syslog").await).await,
            (StatusCode::OK, "line one\n".into())
        );
        assert_eq!(
            body(serve(&root, "/logs/escape").await).await.0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            body(serve(&root, "/logs/../secret").await).await.0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            body(serve(&root, "/logs/absent").await).await.0,
            StatusCode::NOT_FOUND
        );
        let redirect = serve(&root, "/logs/pods").await;
        assert_eq!(redirect.status(), StatusCode::MOVED_PERMANENTLY);
        assert_eq!(redirect.headers()[hyper::header::LOCATION], "pods/");
    }

    /// Generated `..`, symlink and encoding variants (thousands of paths): none reads
    /// the file next to the log directory or lists the directory above it.
    #[tokio::test]
    async fn no_generated_variant_escapes_the_log_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("log");
        std::fs::create_dir_all(root.join("pods")).expect("dirs");
        std::fs::write(root.join("syslog"), "line one\n").expect("file");
        std::fs::write(root.join("pods/app.log"), "app\n").expect("file");
        std::fs::write(dir.path().join("secret"), "host secret").expect("file");
        std::os::unix::fs::symlink(dir.path(), root.join("escape")).expect("link");
        std::os::unix::fs::symlink(dir.path().join("secret"), root.join("escape_file"))
            .expect("link");
        std::os::unix::fs::symlink("pods", root.join("inner_link")).expect("link");
        std::os::unix::fs::symlink("../..", root.join("pods/up")).expect("link");

        let segments = [
            "..",
            ".",
            "escape",
            "escape_file",
            "pods",
            "up",
            "syslog",
            "%2e%2e",
            "inner_link",
            "secret",
        ];
        let variants = kubelet_test_support::path_variants(&segments, 3);
        assert!(variants.len() >= 200, "{}", variants.len());
        let (mut served, mut refused) = (0, 0);
        for variant in &variants {
            let path = format!("/logs/{}", variant.trim_start_matches('/'));
            let (status, text) = body(serve(&root, &path).await).await;
            assert!(
                !text.contains("host secret")
                    && !text.contains("href=\"secret\"")
                    && !text.contains("href=\"log/\""),
                "{path} escaped: {status} {text:?}"
            );
            if status == StatusCode::OK {
                served += 1;
            } else {
                refused += 1;
            }
        }
        // Served: the variants that stay inside (e.g. `pods/../syslog`).
        assert!(
            served > 0 && refused > 0,
            "{served} served, {refused} refused"
        );
        eprintln!(
            "/logs/ traversal: {} variants, {served} served inside, {refused} refused",
            variants.len()
        );
    }
}
