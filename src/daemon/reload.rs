//! The consent task, and reload: the one task that reads the consent file
//! (through `consent::ConsentOwner`), on every occasion there is:
//!
//! - a command's change, handed over by the control handler with the act
//!   it declares, and answered once applied;
//! - a change to the consent file (or the policy file) noticed through a
//!   watch on its directory (`watch::FileWatch`; a look every
//!   `watch::FALLBACK_POLL` if no watch can be set up);
//! - SIGHUP, which first re-reads the config file;
//! - the owner's own next look (a withdrawal to confirm, a look deferred
//!   while a command held the consent lock);
//! - an activation the ingest path has recorded, put in force (answered
//!   once published) without reading the file.
//!
//! A config that fails validation, or whose `[upload]` settings cannot be
//! used (a CA file that is gone, say), is rejected: the daemon runs on
//! with the last good one, and the error is in the log and in `status`.
//! A good one is put in force at once for what can change live (region,
//! opt-out signal, consent and policy files, `[upload]`); settings that
//! only a restart applies (`state_dir`, `runtime_dir`, `catalogue`,
//! `admin_group`, `[product]`, `[collect]`, `[store]`) keep their start-up
//! values, and `status` lists the ones that changed.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::control::{Handler, Notice};
use super::watch::FileWatch;
use super::{Agent, Shared};
use crate::clock::rfc3339;
use crate::config::Config;
use crate::control::ReloadReport;
use crate::upload::Transport;

/// What the consent task is told.
pub(super) struct Inboxes {
    /// Commands' consent changes, from the control handler.
    pub notices: mpsc::Receiver<Notice>,
    /// Activations the store has recorded, from the ingest connections.
    pub activations: mpsc::Receiver<crate::ingest::Activated>,
}

pub(super) async fn run(
    agent: Arc<Agent>,
    handler: Arc<Handler>,
    inboxes: Inboxes,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let Inboxes {
        mut notices,
        mut activations,
    } = inboxes;
    let hup = agent.reload_handle();
    let mut seen = stamps(&agent.config());
    let mut watch = FileWatch::new(watched(&agent.config()));
    loop {
        let own_look = agent.next_consent_look().await;
        let look_due = async {
            match own_look {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            notice = notices.recv() => {
                let Some(Notice::Changed { act, reply }) = notice else { return };
                tracing::debug!(act = act.is_some(), "consent task: a command's notice");
                let _ = reply.send(handler.apply_consent(act.as_ref()).await);
                seen = stamps(&agent.config());
                continue;
            }
            Some(activated) = activations.recv() => {
                handler.activated(activated.method).await;
                let _ = activated.done.send(());
                continue;
            }
            _ = hup.notified() => {
                let report = reload(&agent);
                match &report.error {
                    None => tracing::info!(restart_needed = ?report.restart_needed, "config reloaded"),
                    Some(error) => tracing::error!(%error, "config reload rejected; running on the last good config"),
                }
                shared.set_reload(report);
            }
            _ = look_due => tracing::debug!("consent task: its own look is due"),
            _ = watch.changed() => {
                let now = stamps(&agent.config());
                if now == seen {
                    continue;
                }
                tracing::info!("the consent or policy file changed; reading it again");
            }
        }
        seen = stamps(&agent.config());
        // A reload may name other files; a symlink may point elsewhere now.
        watch.follow(watched(&agent.config()));
        if let crate::control::Response::Error { message } = handler.apply_consent(None).await {
            tracing::error!(error = %message, "cannot apply the consent file");
        }
    }
}

/// Reads the config file again and puts what can change live in force.
fn reload(agent: &Agent) -> ReloadReport {
    let old = agent.config();
    let at = rfc3339(SystemTime::now());
    let rejected = |error: String| ReloadReport {
        at: at.clone(),
        applied: false,
        error: Some(error),
        restart_needed: Vec::new(),
    };
    let new = match Config::load(&old.path) {
        Ok(new) => new,
        Err(err) => return rejected(err.to_string()),
    };
    if let Err(err) = new.admin_gid() {
        return rejected(err);
    }
    let transport = match Transport::new(&new.upload) {
        Ok(transport) => transport,
        Err(err) => return rejected(err.to_string()),
    };
    let restart_needed = restart_needed(&old, &new);
    let applied = Config {
        path: old.path.clone(),
        state_dir: old.state_dir.clone(),
        runtime_dir: old.runtime_dir.clone(),
        catalogue_file: old.catalogue_file.clone(),
        admin_group: old.admin_group.clone(),
        product: old.product.clone(),
        collect: old.collect.clone(),
        store: old.store.clone(),
        ..new
    };
    agent.replace_config(applied, transport);
    ReloadReport {
        at,
        applied: true,
        error: None,
        restart_needed,
    }
}

/// The settings that differ and that only a restart applies.
fn restart_needed(old: &Config, new: &Config) -> Vec<String> {
    let mut changed = Vec::new();
    let mut check = |name: &str, differs: bool| {
        if differs {
            changed.push(name.to_owned());
        }
    };
    check("state_dir", old.state_dir != new.state_dir);
    check("runtime_dir", old.runtime_dir != new.runtime_dir);
    check("catalogue", old.catalogue_file != new.catalogue_file);
    check("admin_group", old.admin_group != new.admin_group);
    check("[product]", old.product != new.product);
    check("[collect]", old.collect != new.collect);
    check("[store]", old.store != new.store);
    changed
}

/// The files whose changes are applied without a SIGHUP.
fn watched(config: &Config) -> Vec<PathBuf> {
    std::iter::once(config.consent_file.clone())
        .chain(config.policy_file.clone())
        .collect()
}

/// What identifies the consent and policy files' contents without reading
/// them: inode, size and modification time of each (`None`: missing).
type Stamp = Option<(u64, u64, i64, i64)>;

fn stamps(config: &Config) -> (Stamp, Stamp) {
    let stamp = |path: &Path| {
        std::fs::metadata(path)
            .ok()
            .map(|m| (m.ino(), m.size(), m.mtime(), m.mtime_nsec()))
    };
    (
        stamp(&config.consent_file),
        config.policy_file.as_deref().and_then(stamp),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::{Document, Origin};

    fn config(text: &str) -> Config {
        let path = Path::new("/etc/consentry/consentry.toml");
        let document = Document {
            origin: Origin::File(path.into()),
            text: text.into(),
        };
        Config::from_document(&document, path).unwrap()
    }

    #[test]
    fn only_settings_a_restart_applies_are_listed() {
        let base = crate::config::EMBEDDED_EXAMPLE;
        let old = config(base);
        assert!(restart_needed(&old, &config(base)).is_empty());
        let live = base.replace("batch_max_records = 4000", "batch_max_records = 100");
        assert!(restart_needed(&old, &config(&live)).is_empty());
        let moved = base.replace("ksn_window = \"1h\"", "ksn_window = \"2h\"");
        assert_eq!(restart_needed(&old, &config(&moved)), ["[collect]"]);
    }
}
