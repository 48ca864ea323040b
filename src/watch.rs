//! Local development: a directory source re-reads its files as soon as one is saved.
//!
//! The directory is watched (not its files: editors and mounted Secrets replace files, which a file
//! watch loses), and bursts of events are folded into one wake-up.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::Notify;

/// How long a burst of events may last before it counts as one change.
const DEBOUNCE: Duration = Duration::from_millis(200);

/// Watches `dir` from a thread of its own and wakes `wake` after each burst of changes.
///
/// # Errors
/// When the directory cannot be watched.
pub fn spawn(dir: PathBuf, wake: Arc<Notify>) -> notify::Result<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Only changes count: reading the files (as every sync does) raises access events, which would
        // wake the source over and over.
        if let Ok(event) = event {
            use notify::EventKind;
            use notify::event::{MetadataKind, ModifyKind};
            let change = match event.kind {
                EventKind::Access(_) | EventKind::Other => false,
                EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime)) => false,
                EventKind::Any
                | EventKind::Create(_)
                | EventKind::Modify(_)
                | EventKind::Remove(_) => true,
            };
            if change {
                let _ = tx.send(());
            }
        }
    })?;
    watcher.watch(&dir, RecursiveMode::Recursive)?;
    std::thread::Builder::new()
        .name(format!("watch {}", dir.display()))
        .spawn(move || {
            let _watcher = watcher; // lives as long as the thread
            while rx.recv().is_ok() {
                while rx.recv_timeout(DEBOUNCE).is_ok() {}
                wake.notify_one();
            }
        })
        .map_err(notify::Error::io)?;
    Ok(())
}
