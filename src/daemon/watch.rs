//! Noticing that the consent or policy file may have changed, without
//! waking up to look: one inotify watch on the directory of each file.
//!
//! Directories, not files: editors, installers and our own atomic writes
//! (`consent::file`: temp file, fsync, rename) replace the file by a
//! rename, and a watch on the old inode would see nothing after the first
//! replacement. The events of a directory are filtered to the watched
//! names. Through a symlink, the directory of the file it points to is
//! watched too, since that is the file that gets replaced.
//!
//! This module only says "look again"; `reload` compares the files' stamps
//! and re-reads them. When no watch can be set up (no inotify instance
//! left, a directory that does not exist yet), it says so in the log and
//! falls back to a look every [`FALLBACK_POLL`].

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use inotify::{EventMask, EventStream, Inotify, WatchDescriptor, WatchMask};

/// How often the files are looked at when they cannot be watched: rare, as
/// an idle daemon should not wake up for nothing; a consent change made
/// through the CLI is applied at once regardless (`consent` tells the
/// daemon over the control socket).
pub const FALLBACK_POLL: Duration = Duration::from_secs(60);

/// How long after the first event the files are looked at. An editor's
/// save is a burst of events (a backup renamed away, the new file renamed
/// in, its mode set), and `consentry consent` writes the file and then
/// tells the daemon itself: its receipt must say `cli`, so the file watch
/// must not get there first and record the change as a hand edit (`file`).
/// Within the "two seconds" a hand edit is promised to take.
pub(super) const SETTLE: Duration = Duration::from_secs(1);

/// What happens in a directory that can change a watched file: it is
/// written and closed, renamed in or out, created, deleted, or its mode or
/// owner changes (a file the daemon can no longer read allows nothing).
/// Not `MODIFY`: a file half-way through being written is not worth
/// reading; its `CLOSE_WRITE` follows.
fn mask() -> WatchMask {
    WatchMask::CLOSE_WRITE
        | WatchMask::MOVED_TO
        | WatchMask::MOVED_FROM
        | WatchMask::CREATE
        | WatchMask::DELETE
        | WatchMask::ATTRIB
        | WatchMask::DELETE_SELF
        | WatchMask::MOVE_SELF
}

/// Room for many events per read (each is 16 bytes plus its name).
const EVENT_BUFFER: usize = 4096;

/// A watch on the directories of some files; see the module docs.
pub(super) struct FileWatch {
    /// The files as configured: what [`FileWatch::follow`] compares with.
    files: Vec<PathBuf>,
    /// The (directory, name) pairs watched, from `files` and their symlink
    /// targets.
    places: Vec<(PathBuf, OsString)>,
    /// The watches; `None` when they could not be set up (fallback poll).
    stream: Option<Watching>,
    /// A watch went away (its directory was removed or replaced): set up
    /// again at the next `follow`.
    stale: bool,
}

struct Watching {
    events: EventStream<Vec<u8>>,
    /// The name each watch descriptor stands for.
    names: Vec<(WatchDescriptor, OsString)>,
}

impl FileWatch {
    /// Watches the directories of `files`; logs and falls back to
    /// [`FALLBACK_POLL`] when it cannot.
    pub(super) fn new(files: Vec<PathBuf>) -> Self {
        let places = places(&files);
        let stream = match watch(&places) {
            Ok(watching) => Some(watching),
            Err(err) => {
                tracing::warn!(
                    error = %err,
                    every = ?FALLBACK_POLL,
                    "cannot watch the consent and policy files' directories; looking at the files on a timer instead (a hand edit takes effect later; `consentry consent` is applied at once)"
                );
                None
            }
        };
        Self {
            files,
            places,
            stream,
            stale: false,
        }
    }

    /// Sets the watches up again if the files are others now (a reload
    /// changed the config), a symlink points elsewhere, or a watch went
    /// away. Cheap when nothing changed: a few `readlink`s.
    /// When not watching, it tries again, and logs only when it now can.
    pub(super) fn follow(&mut self, files: Vec<PathBuf>) {
        let places = places(&files);
        if !self.stale && files == self.files && places == self.places && self.stream.is_some() {
            return;
        }
        if self.stream.is_none() && !self.stale && files == self.files {
            if let Ok(watching) = watch(&places) {
                tracing::info!("watching the consent and policy files' directories now");
                self.stream = Some(watching);
                self.places = places;
            }
            return;
        }
        *self = Self::new(files);
    }

    /// Returns when a watched file may have changed: after an event on one
    /// of its names (and a short settle), or after [`FALLBACK_POLL`] when
    /// not watching. Cancel-safe: an event not yet read stays queued.
    pub(super) async fn changed(&mut self) {
        let Some(watching) = &mut self.stream else {
            tokio::time::sleep(FALLBACK_POLL).await;
            return;
        };
        loop {
            match watching.events.next().await {
                Some(Ok(event)) => {
                    if event.mask.intersects(
                        EventMask::Q_OVERFLOW | EventMask::IGNORED | EventMask::DELETE_SELF,
                    ) || event.mask.contains(EventMask::MOVE_SELF)
                    {
                        // Events were lost, or a directory went away: look,
                        // and set the watches up again.
                        self.stale = true;
                        break;
                    }
                    let name = event.name.as_deref();
                    if watching
                        .names
                        .iter()
                        .any(|(wd, watched)| *wd == event.wd && name == Some(watched.as_os_str()))
                    {
                        break;
                    }
                }
                Some(Err(err)) => {
                    tracing::warn!(error = %err, "cannot read file events; watching again");
                    self.stale = true;
                    // Not at once: an error that repeats must not spin.
                    tokio::time::sleep(SETTLE).await;
                    return;
                }
                None => {
                    self.stale = true;
                    return;
                }
            }
        }
        tokio::time::sleep(SETTLE).await;
        // The rest of the burst says nothing new, unless a watch went away.
        while let Some(Some(event)) = watching.events.next().now_or_never() {
            if event.is_ok_and(|e| {
                e.mask
                    .intersects(EventMask::Q_OVERFLOW | EventMask::IGNORED)
            }) {
                self.stale = true;
            }
        }
    }
}

/// Each file's (directory, name), and its symlink target's when it is one.
fn places(files: &[PathBuf]) -> Vec<(PathBuf, OsString)> {
    let mut places = Vec::new();
    for file in files {
        let mut add = |path: &Path| {
            if let Some(place) = split(path)
                && !places.contains(&place)
            {
                places.push(place);
            }
        };
        add(file);
        if std::fs::symlink_metadata(file).is_ok_and(|m| m.file_type().is_symlink())
            && let Ok(target) = std::fs::canonicalize(file)
        {
            add(&target);
        }
    }
    places
}

fn split(path: &Path) -> Option<(PathBuf, OsString)> {
    let name = path.file_name()?.to_owned();
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    Some((dir, name))
}

fn watch(places: &[(PathBuf, OsString)]) -> io::Result<Watching> {
    let inotify = Inotify::init()?;
    let mut names = Vec::new();
    for (dir, name) in places {
        let wd = inotify
            .watches()
            .add(dir, mask())
            .map_err(|err| io::Error::new(err.kind(), format!("{}: {err}", dir.display())))?;
        names.push((wd, name.clone()));
    }
    let events = inotify.into_event_stream(vec![0; EVENT_BUFFER])?;
    Ok(Watching { events, names })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `changed` within `limit`, or not.
    async fn changed_within(watch: &mut FileWatch, limit: Duration) -> bool {
        tokio::time::timeout(limit, watch.changed()).await.is_ok()
    }

    #[tokio::test]
    async fn a_replaced_or_edited_file_is_noticed_and_its_neighbours_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let consent = dir.path().join("consent.toml");
        std::fs::write(&consent, "# nothing\n").unwrap();
        let mut watch = FileWatch::new(vec![consent.clone()]);
        assert!(watch.stream.is_some(), "inotify is there on Linux");

        // A neighbour: nothing to look at.
        std::fs::write(dir.path().join("other.toml"), "x").unwrap();
        assert!(!changed_within(&mut watch, SETTLE + Duration::from_millis(300)).await);

        // Written in place.
        std::fs::write(&consent, "# edited\n").unwrap();
        assert!(changed_within(&mut watch, SETTLE + Duration::from_secs(1)).await);

        // Replaced by a rename, as an atomic write does; twice, since a
        // watch on the first file's inode would miss the second time.
        for round in 0..2 {
            let temp = dir.path().join(".consent.toml.tmp");
            std::fs::write(&temp, format!("# round {round}\n")).unwrap();
            // Creating the temp file is a neighbour's event: let it pass.
            assert!(!changed_within(&mut watch, SETTLE + Duration::from_millis(300)).await);
            std::fs::rename(&temp, &consent).unwrap();
            assert!(changed_within(&mut watch, SETTLE + Duration::from_secs(1)).await);
        }

        // Removed.
        std::fs::remove_file(&consent).unwrap();
        assert!(changed_within(&mut watch, SETTLE + Duration::from_secs(1)).await);
    }

    #[tokio::test]
    async fn through_a_symlink_the_target_directory_is_watched_too() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("real")).unwrap();
        let target = dir.path().join("real/consent.toml");
        std::fs::write(&target, "# nothing\n").unwrap();
        let link = dir.path().join("consent.toml");
        std::os::unix::fs::symlink("real/consent.toml", &link).unwrap();
        let mut watch = FileWatch::new(vec![link.clone()]);
        assert_eq!(watch.places.len(), 2, "{:?}", watch.places);
        std::fs::write(&target, "# edited through the link\n").unwrap();
        assert!(changed_within(&mut watch, SETTLE + Duration::from_secs(1)).await);
        // Nothing moved: following the same files keeps the same watches.
        watch.follow(vec![link]);
        assert!(watch.stream.is_some());
    }

    #[tokio::test]
    async fn a_directory_that_does_not_exist_falls_back_to_the_slow_poll() {
        let dir = tempfile::tempdir().unwrap();
        let watch = FileWatch::new(vec![dir.path().join("missing/consent.toml")]);
        assert!(watch.stream.is_none());
    }
}
