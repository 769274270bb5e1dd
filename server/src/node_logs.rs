//! `/logs/`: the node's log directory (`/var/log`) as upstream's kubelet serves it with
//! Go's `http.FileServer`: a directory is a listing of links (a path without its
//! trailing slash is redirected to it), a file is its content. Nothing outside the
//! directory is served: `..` is cleaned away as Go does, and a symlink leading out of
//! the directory is not found.

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

/// The file or directory `request_path` (under `/logs`) names inside `root`, the path
/// cleaned as Go's `path.Clean` (so `..` never climbs above the root).
fn resolve(root: &Path, request_path: &str) -> PathBuf {
    let rest = request_path.strip_prefix("/logs").unwrap_or(request_path);
    let mut parts: Vec<String> = Vec::new();
    for component in Path::new(rest).components() {
        match component {
            Component::Normal(part) => parts.push(part.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    parts
        .iter()
        .fold(root.to_path_buf(), |path, part| path.join(part))
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

/// Answers `GET /logs/...` from `root`.
pub async fn serve(root: &Path, request_path: &str) -> Response<ApiBody> {
    let Ok(canonical_root) = tokio::fs::canonicalize(root).await else {
        return not_found();
    };
    let wanted = resolve(&canonical_root, request_path);
    let Ok(real) = tokio::fs::canonicalize(&wanted).await else {
        return not_found();
    };
    if !real.starts_with(&canonical_root) {
        tracing::debug!(path = %wanted.display(), "refusing a /logs path that leads outside the log directory");
        return not_found();
    }
    let Ok(metadata) = tokio::fs::metadata(&real).await else {
        return not_found();
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
        return list(&real).await;
    }
    let file = match tokio::fs::File::open(&real).await {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return text(
                StatusCode::FORBIDDEN,
                "text/plain; charset=utf-8",
                "403 Forbidden\n",
            );
        }
        Err(_) => return not_found(),
    };
    let stream = ReaderStream::new(file).map(|chunk| chunk.map(Frame::data));
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
async fn list(dir: &Path) -> Response<ApiBody> {
    let mut entries = match tokio::fs::read_dir(dir).await {
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
        let root = Path::new("/var/log");
        assert_eq!(resolve(root, "/logs/"), PathBuf::from("/var/log"));
        assert_eq!(
            resolve(root, "/logs/a/b.log"),
            PathBuf::from("/var/log/a/b.log")
        );
        assert_eq!(
            resolve(root, "/logs/../../etc/passwd"),
            PathBuf::from("/var/log/etc/passwd")
        );
        assert_eq!(resolve(root, "/logs/a/../b"), PathBuf::from("/var/log/b"));
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
}
