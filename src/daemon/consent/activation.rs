//! An activation, as the consent owner puts it in force.
//!
//! The ingest path has committed the activation (`store::activation`) and
//! waits here: the owner publishes the snapshot again knowing it
//! (`Registry::with_activation`), stops a batch in flight it no longer
//! allows, and, after an activation with a key file, deletes what the
//! purposes waiting for an activation by code had queued, in one store
//! transaction with its audit line. A key file is the person's explicit
//! choice not to send that data (seed 004), so it deletes whatever the
//! consent file says, like a command's revoke; it is the only deletion
//! that does not come from the consent file, and it happens here, where
//! every other deletion of consent's happens.

use std::sync::Arc;

use super::{ApplyError, ConsentOwner, stop_unless_allowed};
use crate::catalogue::ActivationMethod;
use crate::collect::ksn;
use crate::daemon::Agent;
use crate::upload::InFlight;

/// Why records are deleted after an activation with a key file.
pub const KEY_FILE_PURGE: &str = "the product was activated with a key file, which sends none of what waits for an activation by code";

/// What putting an activation in force did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ActivationApplied {
    pub generation: u64,
    /// Records deleted (after a key file).
    pub purged: u64,
}

impl ConsentOwner {
    /// Puts an activation the store has recorded in force (see the module).
    pub async fn activated(
        &mut self,
        agent: &Agent,
        method: ActivationMethod,
        in_flight: Option<&InFlight>,
    ) -> Result<ActivationApplied, ApplyError> {
        self.activation = Some(method);
        let registry = (*agent.gate.registry())
            .clone()
            .with_activation(Some(method));
        let generation = self.publish(agent, registry);
        stop_unless_allowed(agent, in_flight).await?;
        let purged = match method {
            ActivationMethod::Code => 0,
            ActivationMethod::KeyFile => purge_waiting(agent).await?,
        };
        tracing::info!(
            method = method.as_str(),
            generation,
            purged,
            "activation in force"
        );
        Ok(ActivationApplied { generation, purged })
    }
}

/// Deletes what every purpose that waits for an activation by code has
/// queued (and the open KSN window, should that purpose wait too).
async fn purge_waiting(agent: &Agent) -> Result<u64, ApplyError> {
    let gate = Arc::clone(&agent.gate);
    let tally = agent.writer.tally();
    agent
        .writer
        .call(move |connection, window| {
            let catalogue = gate.catalogue();
            let waits = |purpose: &str| {
                catalogue
                    .purpose(purpose)
                    .is_some_and(|p| p.after_activation.is_some())
            };
            let purged = tally.purge_blocked(connection, |p| !waits(p), KEY_FILE_PURGE)?;
            if waits(ksn::PURPOSE) {
                ksn::discard_window(window, connection)?;
            }
            Ok(purged)
        })
        .await
        .map_err(|err| ApplyError::Store(err.to_string()))
}
