//! consentry: the one process on a machine allowed to send a product's
//! telemetry, and only what an accepted clause allows.
//!
//! The path of one record:
//! 1. a component sends an event over the ingest socket (`ingest`), or a
//!    periodic collector looks at the system; a collector (`collect`) turns
//!    it into a typed `Record` for one purpose (KSN scan verdicts are folded
//!    into a windowed aggregate instead, and leave as one report);
//! 2. the gate (`gate`) checks it against the catalogue (unknown purposes,
//!    undeclared fields and wrong types are refused) and against the consent
//!    snapshot (`consent::Registry`, swapped atomically on every change);
//! 3. the store writer (`store::Writer`) commits admitted records durably in
//!    group commits; only then is the component's line acknowledged;
//! 4. before each batch the uploader (`upload`) reads the snapshot again,
//!    purges what is no longer allowed, gzips and POSTs over TLS with an
//!    `Idempotency-Key`; a 2xx removes the batch, anything else keeps it
//!    queued; every outcome lands in the audit trail.
//!
//! `daemon` runs this as cooperating tasks behind a control socket
//! (`control`); `report` reads back what was sent, day by day and under
//! which consent, as a page a person opens in a browser; the binary's
//! `cli` is the command line; `receiver` is the
//! loopback test receiver used by `consentry demo` and the tests (only with
//! the `demo` feature, on by default and off in the shipped build).

pub mod catalogue;
pub mod clock;
pub mod collect;
pub mod config;
pub mod consent;
pub mod control;
pub mod daemon;
pub mod disclosure;
pub mod document;
#[doc(hidden)]
pub mod fuzzing;
pub mod gate;
pub mod ingest;
pub mod perms;
pub mod preflight;
pub mod privacy;
pub mod ranges;
#[cfg(feature = "demo")]
pub mod receiver;
pub mod record;
pub mod report;
pub mod socket;
pub mod store;
pub mod upload;
