//! Consent: what the user accepted (the consent file) and what that allows
//! (the registry).
//!
//! Nothing outside this module reads or writes the consent file, and nothing
//! outside [`Registry`] decides whether a purpose may send. Every path fails
//! closed: a missing file accepts nothing, an unreadable or invalid file
//! allows nothing, and an acceptance of an older or different text allows
//! nothing until it is renewed.

mod file;
mod policy;
#[cfg(test)]
mod proptests;
mod registry;

pub mod receipt;
pub use file::{Acceptance, ConsentError, Consents, Granted, Method, grant, revoke};
pub use policy::Policy;
pub use registry::{Decision, Jurisdiction, OptOut, Registry};
