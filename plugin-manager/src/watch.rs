//! inotify on the plugin directory: any entry created, removed or renamed wakes the
//! reconciler, which then reads the directory.

use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::Path;

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use tokio::io::unix::AsyncFd;

/// The inotify descriptor, for `AsyncFd`.
struct InotifyFd(Inotify);

impl AsRawFd for InotifyFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// An inotify watch on one directory.
pub(crate) struct DirWatch {
    fd: AsyncFd<InotifyFd>,
}

impl DirWatch {
    pub(crate) async fn new(dir: &Path) -> std::io::Result<Self> {
        let dir = dir.to_path_buf();
        let inotify = tokio::task::spawn_blocking(move || -> nix::Result<Inotify> {
            let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
            inotify.add_watch(
                &dir,
                AddWatchFlags::IN_CREATE
                    | AddWatchFlags::IN_DELETE
                    | AddWatchFlags::IN_MOVED_FROM
                    | AddWatchFlags::IN_MOVED_TO
                    | AddWatchFlags::IN_DELETE_SELF
                    | AddWatchFlags::IN_MOVE_SELF,
            )?;
            Ok(inotify)
        })
        .await
        .map_err(std::io::Error::other)?
        .map_err(std::io::Error::from)?;
        // SAFETY: `InotifyFd` owns the descriptor (an `OwnedFd` inside `Inotify`), always
        // returns that same descriptor, and is dropped only after the `AsyncFd` that owns
        // it deregisters it, which is all `register` requires; tokio has no safe
        // constructor for a descriptor that is not a socket or pipe.
        #[allow(unsafe_code)]
        let fd = unsafe { AsyncFd::register(InotifyFd(inotify)) }.map_err(std::io::Error::from)?;
        Ok(Self { fd })
    }

    /// Waits until something in the directory changed: true, or false when the
    /// directory itself went away (deleted, moved, unmounted).
    pub(crate) async fn changed(&mut self) -> bool {
        loop {
            let Ok(mut guard) = self.fd.readable().await else {
                return false;
            };
            match guard.get_inner().0.read_events() {
                Ok(events) => {
                    return !events.iter().any(|e| {
                        e.mask.intersects(
                            AddWatchFlags::IN_IGNORED
                                | AddWatchFlags::IN_DELETE_SELF
                                | AddWatchFlags::IN_MOVE_SELF
                                | AddWatchFlags::IN_UNMOUNT,
                        )
                    });
                }
                Err(nix::errno::Errno::EAGAIN) => guard.clear_ready(),
                Err(_) => return false,
            }
        }
    }
}
