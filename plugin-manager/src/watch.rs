//! inotify on the plugin directory: any entry created, removed or renamed wakes the
//! reconciler, which then reads the directory.

use std::path::Path;

use kubelet_inotify::{AddWatchFlags, Watch};

/// An inotify watch on one directory.
pub(crate) struct DirWatch(Watch);

impl DirWatch {
    pub(crate) async fn new(dir: &Path) -> std::io::Result<Self> {
        let mask = AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_DELETE
            | AddWatchFlags::IN_MOVED_FROM
            | AddWatchFlags::IN_MOVED_TO;
        Ok(Self(Watch::new(dir, mask).await?))
    }

    /// Waits until something in the directory changed: true, or false when the
    /// directory itself went away (deleted, moved, unmounted) or cannot be watched.
    pub(crate) async fn changed(&mut self) -> bool {
        matches!(self.0.next_batch().await, Ok(Some(_)))
    }
}
