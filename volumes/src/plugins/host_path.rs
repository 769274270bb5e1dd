//! hostPath (upstream `pkg/volume/hostpath`): a path of the node, checked against the
//! volume's `type` (created for `DirectoryOrCreate` and `FileOrCreate`); nothing is
//! created in the pod's directory and nothing is removed at tear-down.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{HostPathVolumeSource, PersistentVolume, Pod, Volume};
use kubelet_core::{MountedVolume, VolumePlugin};

use super::blocking;
use crate::error::{Error, Result};

/// Upstream plugin name.
pub(crate) const PLUGIN_NAME: &str = "kubernetes.io/host-path";

/// A file type as upstream's `hostutil.GetFileType` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileType {
    Directory,
    File,
    Socket,
    CharDevice,
    BlockDevice,
}

impl FileType {
    fn as_str(self) -> &'static str {
        match self {
            Self::Directory => "Directory",
            Self::File => "File",
            Self::Socket => "Socket",
            Self::CharDevice => "CharDevice",
            Self::BlockDevice => "BlockDevice",
        }
    }
}

/// Upstream `getFileType`: follows symlinks.
fn file_type(path: &Path) -> std::result::Result<FileType, String> {
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(format!(
                "path {:?} does not exist",
                path.display().to_string()
            ));
        }
        Err(e) => return Err(format!("stat {}: {e}", path.display())),
    };
    let ft = meta.file_type();
    if ft.is_dir() {
        Ok(FileType::Directory)
    } else if ft.is_file() {
        Ok(FileType::File)
    } else if ft.is_socket() {
        Ok(FileType::Socket)
    } else if ft.is_char_device() {
        Ok(FileType::CharDevice)
    } else if ft.is_block_device() {
        Ok(FileType::BlockDevice)
    } else {
        Err("only recognise file, directory, socket, block device and character device".to_owned())
    }
}

fn exists(path: &Path) -> bool {
    fs::metadata(path).is_ok()
}

/// Upstream `checkType` with its messages; creates the path for the `...OrCreate`
/// types (`DirectoryOrCreate` 0755 with parents, `FileOrCreate` 0644 without).
pub(crate) fn check_type(path: &Path, path_type: &str) -> Result<()> {
    let expect = |wanted: FileType, expected: &str| -> Result<()> {
        match file_type(path) {
            Ok(actual) if actual == wanted => Ok(()),
            Ok(actual) => Err(Error::Invalid(format!(
                "hostPath type check failed: {} is not a {expected}, it's a {}",
                path.display(),
                actual.as_str()
            ))),
            Err(e) => Err(Error::Invalid(format!(
                "hostPath type check failed, {} is not a {expected}, unable to determine its type: {e}",
                path.display()
            ))),
        }
    };
    match path_type {
        "" => Ok(()),
        "DirectoryOrCreate" if !exists(path) => {
            use std::os::unix::fs::DirBuilderExt;
            match fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(path)
            {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                    Err(Error::io("mkdir", path, e))
                }
                _ => Ok(()),
            }
        }
        "DirectoryOrCreate" | "Directory" => expect(FileType::Directory, "directory"),
        "FileOrCreate" if !exists(path) => {
            match fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o644)
                .open(path)
            {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                    Err(Error::io("open", path, e))
                }
                _ => Ok(()),
            }
        }
        "FileOrCreate" | "File" => expect(FileType::File, "file"),
        "Socket" => expect(FileType::Socket, "socket file"),
        "CharDevice" => expect(FileType::CharDevice, "character device"),
        "BlockDevice" => expect(FileType::BlockDevice, "block device"),
        other => Err(Error::Invalid(format!("{other} is an invalid volume type"))),
    }
}

/// The hostPath plugin.
pub(crate) struct HostPathPlugin;

/// A host path checked against its type; the runtime mounts it straight into the
/// containers (read-only when a PersistentVolume's claim reference says so).
async fn set_up(
    name: &str,
    source: HostPathVolumeSource,
    read_only: bool,
) -> kubelet_core::Result<MountedVolume> {
    let fail = |e: Error| e.for_volume(name);
    if source.path.split('/').any(|part| part == "..") {
        return Err(fail(Error::Invalid(format!(
            "invalid HostPath `{}`: must not contain '..'",
            source.path
        ))));
    }
    let path = PathBuf::from(&source.path);
    let checked = path.clone();
    let path_type = source.type_.unwrap_or_default();
    blocking(move || check_type(&checked, &path_type))
        .await
        .map_err(fail)?;
    Ok(MountedVolume {
        name: name.to_owned(),
        host_path: path,
        read_only,
        block: false,
    })
}

#[async_trait]
impl VolumePlugin for HostPathPlugin {
    fn name(&self) -> &str {
        PLUGIN_NAME
    }

    fn supports(&self, volume: &Volume) -> bool {
        volume.host_path.is_some()
    }

    async fn set_up(
        &self,
        _pod: &Pod,
        volume: &Volume,
        _pod_volume_dir: &Path,
    ) -> kubelet_core::Result<MountedVolume> {
        let source = volume.host_path.clone().unwrap_or_default();
        set_up(&volume.name, source, false).await
    }

    fn supports_persistent(&self, pv: &PersistentVolume) -> bool {
        pv.spec.as_ref().is_some_and(|s| s.host_path.is_some())
    }

    async fn set_up_persistent(
        &self,
        _pod: &Pod,
        volume_name: &str,
        pv: &PersistentVolume,
        read_only: bool,
        _pod_volume_dir: &Path,
    ) -> kubelet_core::Result<MountedVolume> {
        let spec = pv.spec.as_ref();
        if spec.and_then(|s| s.volume_mode.as_deref()) == Some("Block") {
            // Upstream's hostPath plugin is no block volume plugin either.
            return Err(Error::Invalid(
                "hostPath persistent volumes cannot be raw block volumes (volumeMode Block)"
                    .to_owned(),
            )
            .for_volume(volume_name));
        }
        let source = spec.and_then(|s| s.host_path.clone()).unwrap_or_default();
        set_up(volume_name, source, read_only).await
    }

    async fn tear_down(
        &self,
        _volume_name: &str,
        _pod_volume_dir: &Path,
    ) -> kubelet_core::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn type_checks_with_upstreams_messages() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("dir");
        let file = root.path().join("file");
        let missing = root.path().join("missing");
        fs::create_dir(&dir).expect("mkdir");
        fs::write(&file, b"x").expect("write");
        let socket_path = root.path().join("sock");
        let _socket = std::os::unix::net::UnixListener::bind(&socket_path).expect("bind");

        let message = |path: &Path, t: &str| {
            check_type(path, t)
                .map(|()| String::new())
                .unwrap_or_else(|e| e.to_string())
        };
        assert_eq!(message(&dir, ""), "");
        assert_eq!(message(&missing, ""), "");
        assert_eq!(message(&dir, "Directory"), "");
        assert_eq!(message(&file, "File"), "");
        assert_eq!(message(&socket_path, "Socket"), "");
        assert_eq!(message(Path::new("/dev/null"), "CharDevice"), "");
        assert_eq!(
            message(&file, "Directory"),
            format!(
                "hostPath type check failed: {} is not a directory, it's a File",
                file.display()
            )
        );
        assert_eq!(
            message(&dir, "File"),
            format!(
                "hostPath type check failed: {} is not a file, it's a Directory",
                dir.display()
            )
        );
        assert_eq!(
            message(&dir, "Socket"),
            format!(
                "hostPath type check failed: {} is not a socket file, it's a Directory",
                dir.display()
            )
        );
        assert_eq!(
            message(&file, "CharDevice"),
            format!(
                "hostPath type check failed: {} is not a character device, it's a File",
                file.display()
            )
        );
        assert_eq!(
            message(&file, "BlockDevice"),
            format!(
                "hostPath type check failed: {} is not a block device, it's a File",
                file.display()
            )
        );
        assert_eq!(
            message(&missing, "Directory"),
            format!(
                "hostPath type check failed, {0} is not a directory, unable to determine its type: path \"{0}\" does not exist",
                missing.display()
            )
        );
        assert_eq!(message(&dir, "Bogus"), "Bogus is an invalid volume type");
    }

    #[test]
    fn or_create_types_create_with_upstreams_modes() {
        let root = tempfile::tempdir().expect("tempdir");
        let new_dir = root.path().join("a/b");
        check_type(&new_dir, "DirectoryOrCreate").expect("created");
        assert!(new_dir.is_dir());
        let new_file = root.path().join("a/f");
        check_type(&new_file, "FileOrCreate").expect("created");
        assert!(new_file.is_file());
        // Created with 0755 and 0644, less the umask.
        let mode = |p: &Path| fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode(&new_dir) & 0o755, mode(&new_dir));
        assert_eq!(mode(&new_file) & 0o644, mode(&new_file));
        // An existing path of the wrong type is still refused.
        let err = check_type(&new_file, "DirectoryOrCreate").expect_err("file");
        assert!(
            err.to_string().ends_with("is not a directory, it's a File"),
            "{err}"
        );
        // FileOrCreate does not create missing parents, as upstream.
        assert!(check_type(&root.path().join("x/y"), "FileOrCreate").is_err());
    }

    #[tokio::test]
    async fn set_up_returns_the_host_path_and_refuses_backsteps() {
        let root = tempfile::tempdir().expect("tempdir");
        let volume = |path: String, t: &str| Volume {
            name: "host".into(),
            host_path: Some(k8s_openapi::api::core::v1::HostPathVolumeSource {
                path,
                type_: Some(t.into()),
            }),
            ..Default::default()
        };
        let plugin = HostPathPlugin;
        let pod = Pod::default();
        let path = root.path().display().to_string();
        let mounted = plugin
            .set_up(&pod, &volume(path.clone(), "Directory"), root.path())
            .await
            .expect("set up");
        assert_eq!(mounted.host_path, root.path());
        assert!(!mounted.read_only);
        let err = plugin
            .set_up(&pod, &volume(format!("{path}/../etc"), ""), root.path())
            .await
            .expect_err("backsteps");
        assert_eq!(
            crate::error::plugin_reason(&err),
            format!("invalid HostPath `{path}/../etc`: must not contain '..'")
        );
    }
}
