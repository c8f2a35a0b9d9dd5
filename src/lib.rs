//! consentry: the one process on a machine allowed to send a product's
//! telemetry, and only what an accepted clause allows.
//!
//! The path of one record:
//! 1. a collector (`collect`) produces a typed `Record` for one purpose;
//! 2. the pipeline (`pipeline`) checks it against the catalogue
//!    (`catalogue::Catalogue::check`): unknown purposes and undeclared
//!    fields are refused;
//! 3. the consent registry (`consent::Registry`) decides whether the purpose
//!    is allowed now, and by which clause version;
//! 4. allowed records are queued durably (`store`), tagged with that clause;
//! 5. before each send the uploader (`upload`) asks the registry again,
//!    purges what is no longer allowed, batches, gzips and POSTs over TLS
//!    with an `Idempotency-Key`; a 2xx removes the batch, anything else keeps
//!    it queued for a later attempt; every outcome lands in the audit trail.
//!
//! `daemon` runs this on a schedule behind a control socket (`control`);
//! the binary's `cli` is the command line; `receiver` is the loopback test
//! receiver used by `consentry demo` and the integration tests.

pub mod catalogue;
pub mod clock;
pub mod collect;
pub mod config;
pub mod consent;
pub mod control;
pub mod daemon;
pub mod document;
pub mod pipeline;
pub mod receiver;
pub mod store;
pub mod upload;
