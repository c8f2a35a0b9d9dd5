//! The path of a record, in one place: collect → check → gate → store →
//! upload. Shared by the daemon, the CLI's `flush` and the demo, so there is
//! exactly one implementation of the gate.
//!
//! The consent file is read afresh at every step that needs a decision, so
//! a grant or revoke made by the CLI (or by hand) takes effect at the next
//! collection or upload without restarting anything.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::catalogue::{Catalogue, CheckError};
use crate::collect::{self, CollectContext, Collector};
use crate::config::Config;
use crate::consent::{Consents, Registry};
use crate::document::ReadError;
use crate::store::{QueuedRecord, Store, StoreError};
use crate::upload::{Transport, TransportError, UploadError, UploadSummary, Uploader};

/// Why the pipeline could not be assembled or run.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Catalogue(#[from] ReadError),
    #[error(
        "collector `{0}` serves a purpose the catalogue does not define; add it to the catalogue or use the embedded one"
    )]
    UnknownPurpose(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error(transparent)]
    Upload(#[from] UploadError),
}

/// What one collection did, per purpose.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectSummary {
    /// Records that passed the check and the gate, and are now queued.
    pub queued: u64,
    /// `purpose: reason` for every collector whose records were not queued.
    pub blocked: Vec<String>,
    /// Collector or catalogue-check failures.
    pub errors: Vec<String>,
}

/// A collection followed by an upload.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlushSummary {
    pub collect: CollectSummary,
    pub upload: UploadSummary,
}

/// Everything needed to move records from collectors to the receiver.
pub struct Pipeline {
    config: Config,
    catalogue: Catalogue,
    store: Arc<Store>,
    collectors: Vec<Box<dyn Collector>>,
    context: CollectContext,
    uploader: Uploader,
}

impl Pipeline {
    /// Loads the catalogue, opens the store and builds the transport. Binds
    /// nothing and sends nothing.
    pub fn open(config: Config) -> Result<Self, PipelineError> {
        let catalogue = config.load_catalogue()?;
        let collectors = collect::all();
        if let Some(orphan) = collectors
            .iter()
            .find(|c| catalogue.purpose(c.purpose()).is_none())
        {
            return Err(PipelineError::UnknownPurpose(orphan.purpose().to_owned()));
        }
        let store = Arc::new(Store::open(&config.state_dir)?);
        let context = CollectContext {
            product: config.product.clone(),
            installation_id: store.installation_id()?,
        };
        let transport = Transport::new(&config.upload)?;
        let uploader = Uploader::new(Arc::clone(&store), transport, &config.upload);
        Ok(Self {
            config,
            catalogue,
            store,
            collectors,
            context,
            uploader,
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn catalogue(&self) -> &Catalogue {
        &self.catalogue
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn uploader(&self) -> &Uploader {
        &self.uploader
    }

    /// Decisions as of now. An unusable consent file allows nothing.
    pub fn registry(&self) -> Registry {
        current_registry(&self.config, &self.catalogue)
    }

    /// Runs every collector once and queues what the catalogue and the
    /// registry let through.
    pub fn collect_once(&self) -> Result<CollectSummary, PipelineError> {
        let registry = self.registry();
        let mut summary = CollectSummary::default();
        let mut queued = Vec::new();
        for collector in &self.collectors {
            let purpose = collector.purpose();
            let decision = registry.decide(purpose);
            if !decision.allowed {
                // Blocked purposes are not even collected: nothing to leak.
                summary
                    .blocked
                    .push(format!("{purpose}: {}", decision.reason));
                continue;
            }
            let records = match collector.collect(&self.context) {
                Ok(records) => records,
                Err(err) => {
                    summary.errors.push(err.to_string());
                    continue;
                }
            };
            for record in records {
                if record.purpose != purpose {
                    let err = format!(
                        "collector `{purpose}` emitted a record for `{}`; dropped",
                        record.purpose
                    );
                    tracing::error!("{err}");
                    summary.errors.push(err);
                    continue;
                }
                if let Err(err) = self.gate(&record, &decision, &mut queued) {
                    tracing::error!(purpose, error = %err, "record refused by the catalogue");
                    summary.errors.push(err.to_string());
                }
            }
        }
        self.store.enqueue(&queued)?;
        summary.queued = queued.len() as u64;
        Ok(summary)
    }

    fn gate(
        &self,
        record: &collect::Record,
        decision: &crate::consent::Decision,
        queued: &mut Vec<QueuedRecord>,
    ) -> Result<(), CheckError> {
        self.catalogue.check(record)?;
        let (Some(clause), Some(version), Some(sha)) = (
            &decision.clause,
            decision.clause_version,
            &decision.clause_sha256,
        ) else {
            return Ok(());
        };
        queued.push(QueuedRecord {
            purpose: record.purpose.clone(),
            clause: clause.clone(),
            clause_version: version,
            clause_sha256: sha.clone(),
            collected_at: crate::clock::rfc3339(record.collected_at),
            fields_json: serde_json::to_string(&record.fields).expect("fields always serialize"),
        });
        Ok(())
    }

    /// Re-asks the registry, purges what is no longer allowed, and sends.
    pub async fn upload_once(&mut self, force: bool) -> Result<UploadSummary, PipelineError> {
        let registry = self.registry();
        Ok(self.uploader.upload_pending(&registry, force).await?)
    }

    /// Collect now, then upload now (ignoring any wait after a failure).
    pub async fn flush(&mut self) -> Result<FlushSummary, PipelineError> {
        let collect = self.collect_once()?;
        let upload = self.upload_once(true).await?;
        Ok(FlushSummary { collect, upload })
    }
}

/// Reads the consent file named by `config` and evaluates it. Used by the
/// pipeline and by CLI verbs that show decisions without a store.
pub fn current_registry(config: &Config, catalogue: &Catalogue) -> Registry {
    match Consents::load(&config.consent_file, catalogue) {
        Ok(consents) => Registry::evaluate(catalogue, &consents, config.region),
        Err(err) => {
            tracing::warn!(error = %err, "consent file unusable: nothing is allowed");
            Registry::closed(catalogue, &err.to_string())
        }
    }
}
