//! Mounts for the disk faults: a small tmpfs, or a read-only bind mount,
//! made by the test when it runs as root and undone when it ends. Without
//! root (or where mounting is refused) the test says `SKIPPED: …` on
//! stderr and passes: such a fault cannot be injected there.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Whether this process may mount.
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Prints the visible skip line.
pub fn skip(test: &str, why: &str) {
    eprintln!("SKIPPED: {test}: {why}");
}

/// A mount the test made; unmounted (lazily, even if still in use) when
/// dropped.
pub struct Mount {
    path: PathBuf,
}

impl Mount {
    /// A tmpfs of `size` (`mount -o size=…` syntax, `2m`) at `path`.
    pub fn tmpfs(path: &Path, size: &str) -> Result<Self, String> {
        std::fs::create_dir_all(path).map_err(|e| e.to_string())?;
        let options = format!("size={size},mode=0700");
        mount(&["-t", "tmpfs", "-o", &options, "tmpfs"], path)?;
        Ok(Self {
            path: path.to_owned(),
        })
    }

    /// `path` bound onto itself, so that it can be made read-only alone.
    pub fn bind(path: &Path) -> Result<Self, String> {
        mount(&["--bind", &path.display().to_string()], path)?;
        Ok(Self {
            path: path.to_owned(),
        })
    }

    /// Remounts with `options` (`size=64m`, `bind,ro`, `bind,rw`).
    pub fn remount(&self, options: &str) -> Result<(), String> {
        mount(&["-o", &format!("remount,{options}")], &self.path)
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

fn mount(args: &[&str], path: &Path) -> Result<(), String> {
    let output = Command::new("mount")
        .args(args)
        .arg(path)
        .output()
        .map_err(|e| format!("cannot run mount: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "mount {args:?} {} failed: {}",
            path.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}
