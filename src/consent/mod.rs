//! Consent: what the user accepted (the consent file) and what that allows
//! (the registry).
//!
//! Nothing outside this module reads or writes the consent file, and nothing
//! outside [`Registry`] decides whether a purpose may send. Every path fails
//! closed: a missing, empty, unreadable or invalid file allows nothing
//! and deletes nothing (`Reading`), and an acceptance of an older or
//! different text allows nothing until it is renewed.

pub mod act;
mod deletion;
mod file;
mod lock;
mod policy;
#[cfg(test)]
mod proptests;
mod reading;
mod registry;

pub mod receipt;
pub use act::{Act, ActKind};
pub use file::{
    Acceptance, ConsentError, Consents, Granted, Method, Revoked, decline, grant, grant_check,
    revoke,
};
pub use lock::ConsentLock;
pub use policy::Policy;
pub use reading::{Held, Reading};
pub use registry::{Cause, Decision, Jurisdiction, OptOut, Registry};
