//! An async inotify watch: the kubelet's static pod source and its plugin registration
//! directory learn of changes through it instead of re-reading on a timer.
//!
//! - [`Watch::new`]: an inotify watch of one path with the events of `mask`, set up off
//!   the async threads;
//! - [`Watch::next_batch`]: the next batch of events, or `None` once the watched path
//!   itself went away (deleted, moved, unmounted), after which the caller watches the
//!   path anew.
//!
//! # Example
//!
//! ```
//! use kubelet_inotify::{AddWatchFlags, Watch};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let dir = tempfile::tempdir()?;
//! let mut watch = Watch::new(dir.path(), AddWatchFlags::IN_CREATE).await?;
//! std::fs::write(dir.path().join("web.yaml"), "")?;
//! let events = watch.next_batch().await?.expect("the directory is still there");
//! assert_eq!(events[0].name.as_deref(), Some("web.yaml".as_ref()));
//! # Ok(())
//! # }
//! ```

use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::Path;

use nix::sys::inotify::{InitFlags, Inotify};
use tokio::io::unix::AsyncFd;

pub use nix::sys::inotify::{AddWatchFlags, InotifyEvent};

/// The inotify descriptor, for `AsyncFd`.
struct InotifyFd(Inotify);

impl AsRawFd for InotifyFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// An inotify watch of one path.
pub struct Watch {
    fd: AsyncFd<InotifyFd>,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("fd", &self.fd.get_ref().as_raw_fd())
            .finish()
    }
}

impl Watch {
    /// Watches `path` for the events of `mask`. The watched path's own disappearance
    /// (`IN_IGNORED`, `IN_DELETE_SELF`, `IN_MOVE_SELF`, `IN_UNMOUNT`) always ends the
    /// watch, whether `mask` asks for it or not.
    pub async fn new(path: &Path, mask: AddWatchFlags) -> std::io::Result<Self> {
        let path = path.to_path_buf();
        // inotify_add_watch resolves the path, which may touch the disk.
        let inotify = tokio::task::spawn_blocking(move || -> nix::Result<Inotify> {
            let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
            inotify.add_watch(
                &path,
                mask | AddWatchFlags::IN_DELETE_SELF | AddWatchFlags::IN_MOVE_SELF,
            )?;
            Ok(inotify)
        })
        .await
        .map_err(std::io::Error::other)?
        .map_err(std::io::Error::from)?;
        // SAFETY: `InotifyFd` owns the descriptor (an `OwnedFd` inside `Inotify`), always
        // returns that same descriptor, and is dropped only after the `AsyncFd` that owns
        // it deregisters it, which is all `register` requires. tokio offers no safe
        // constructor for a descriptor it does not know (inotify is not a socket or pipe).
        #[allow(unsafe_code)]
        let fd = unsafe { AsyncFd::register(InotifyFd(inotify)) }.map_err(std::io::Error::from)?;
        Ok(Self { fd })
    }

    /// The next batch of events (never empty), or `None` once the watched path went away;
    /// an error when the descriptor cannot be read. Events of the batch that came before
    /// the path went away are dropped with it: the caller reads the path anew anyway.
    pub async fn next_batch(&mut self) -> std::io::Result<Option<Vec<InotifyEvent>>> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.get_inner().0.read_events() {
                Ok(events) if events.iter().any(|e| e.mask.intersects(GONE)) => return Ok(None),
                Ok(events) if events.is_empty() => guard.clear_ready(),
                Ok(events) => return Ok(Some(events)),
                Err(nix::errno::Errno::EAGAIN) => guard.clear_ready(),
                Err(errno) => return Err(errno.into()),
            }
        }
    }
}

/// What inotify reports when the watched path itself is gone.
const GONE: AddWatchFlags = AddWatchFlags::IN_IGNORED
    .union(AddWatchFlags::IN_DELETE_SELF)
    .union(AddWatchFlags::IN_MOVE_SELF)
    .union(AddWatchFlags::IN_UNMOUNT);

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn changes_in_a_directory_are_batched_and_its_removal_ends_the_watch() {
        let parent = tempfile::tempdir().expect("tempdir");
        let dir = parent.path().join("watched");
        std::fs::create_dir(&dir).expect("dir");
        let mut watch = Watch::new(&dir, AddWatchFlags::IN_CREATE | AddWatchFlags::IN_DELETE)
            .await
            .expect("watch");
        std::fs::write(dir.join("a"), "").expect("write");
        let events = watch.next_batch().await.expect("read").expect("not gone");
        assert!(
            events
                .iter()
                .any(|e| e.name.as_deref() == Some("a".as_ref())
                    && e.mask.contains(AddWatchFlags::IN_CREATE))
        );
        std::fs::remove_file(dir.join("a")).expect("remove");
        std::fs::remove_dir(&dir).expect("rmdir");
        // The file's deletion may come in its own batch first; then the directory's end.
        let mut gone = false;
        for _ in 0..3 {
            if watch.next_batch().await.expect("read").is_none() {
                gone = true;
                break;
            }
        }
        assert!(gone, "the watch ends with its directory");
    }

    #[tokio::test]
    async fn a_missing_path_cannot_be_watched() {
        let parent = tempfile::tempdir().expect("tempdir");
        let err = Watch::new(&parent.path().join("absent"), AddWatchFlags::IN_CREATE)
            .await
            .expect_err("no such path");
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    }
}
