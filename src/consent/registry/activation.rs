//! The registry's rule for purposes sent only after activation by code
//! (`after_activation = "code"` in the catalogue; `catalogue::activation`
//! says why such purposes exist).
//!
//! Consent decides first, as for every purpose; the activation can only
//! narrow that: before any activation such a purpose is blocked and held,
//! after an activation with a key file it is withdrawn, and only after an
//! activation by code does its decision by consent stand.

use std::collections::BTreeMap;

use super::{Decision, Registry, blocked, withdrawn};
use crate::catalogue::{ActivationMethod, Catalogue};

/// Why a purpose sent only after activation by code is blocked before any
/// activation.
pub const NOT_ACTIVATED: &str =
    "not activated yet: the licence terms send this only after activation by code";

/// Why such a purpose is blocked after an activation with a key file: the
/// seed makes the key file the way not to agree to it.
pub const KEY_FILE: &str = "activated with a key file, which sends none of this: the licence terms send it only after activation by code";

impl Registry {
    /// These decisions knowing how the product was last activated
    /// (`None`: never, as far as the store knows). A purpose sent only
    /// after activation by code keeps its decision by consent after an
    /// activation by code; before any activation an allowed one is blocked
    /// and held ([`NOT_ACTIVATED`]: no one chose anything, and nothing of
    /// it can have been queued); after an activation with a key file it is
    /// withdrawn whatever the consent ([`KEY_FILE`]): that is the person's
    /// choice not to send it, so what it queued may be deleted. Every other
    /// purpose is left as it is.
    pub fn with_activation(mut self, activation: Option<ActivationMethod>) -> Self {
        self.activation = activation;
        for (purpose, by_consent) in &self.by_consent {
            self.decisions
                .insert(purpose.clone(), after_activation(by_consent, activation));
        }
        self
    }

    /// How the product was last activated, as these decisions know it.
    pub fn activation(&self) -> Option<ActivationMethod> {
        self.activation
    }
}

/// The decisions by consent of the purposes that wait for an activation.
pub(super) fn by_consent(
    catalogue: &Catalogue,
    decisions: &BTreeMap<String, Decision>,
) -> BTreeMap<String, Decision> {
    catalogue
        .purposes()
        .filter(|purpose| purpose.after_activation.is_some())
        .filter_map(|purpose| Some((purpose.id.clone(), decisions.get(&purpose.id)?.clone())))
        .collect()
}

/// A purpose's decision by consent once the activation is known. The
/// catalogue's loader lets a purpose wait for `code` only.
fn after_activation(by_consent: &Decision, activation: Option<ActivationMethod>) -> Decision {
    let purpose = by_consent.purpose();
    let narrowed = match activation {
        Some(ActivationMethod::Code) => return by_consent.clone(),
        Some(ActivationMethod::KeyFile) => withdrawn(purpose, KEY_FILE.to_owned()),
        None if by_consent.is_allowed() => blocked(purpose, NOT_ACTIVATED.to_owned()),
        None => return by_consent.clone(),
    };
    match by_consent.basis() {
        Some(basis) => narrowed.with_basis(basis),
        None => narrowed,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::catalogue::{Basis, Region};
    use crate::consent::Consents;
    use crate::document::{Document, Origin};
    use ActivationMethod::{Code, KeyFile};

    /// The embedded catalogue with its `activation` purpose sent only
    /// after activation by code.
    fn catalogue() -> Catalogue {
        let text = crate::catalogue::EMBEDDED.replacen(
            "id = \"activation\"\n",
            "id = \"activation\"\nafter_activation = \"code\"\n",
            1,
        );
        Catalogue::from_document(&Document {
            origin: Origin::Embedded("test"),
            text,
        })
        .unwrap()
    }

    fn registry(accept_eula: bool) -> Registry {
        let catalogue = catalogue();
        let mut consents = Consents::default();
        if accept_eula {
            consents.accept_for_tests(&catalogue, "eula");
        }
        Registry::evaluate(&catalogue, &consents, Region::Global)
    }

    #[test]
    fn a_purpose_sent_after_activation_by_code_waits_for_it_and_a_key_file_withdraws_it() {
        let before = registry(true);
        let waiting = before.decide("activation");
        assert!(!waiting.is_allowed());
        assert_eq!(waiting.reason(), NOT_ACTIVATED);
        assert_eq!(waiting.basis(), Some(Basis::LegitimateInterest));
        assert!(
            !before.may_purge("activation"),
            "before any activation: held"
        );
        assert!(
            before.is_allowed("update_identity"),
            "the others do not wait"
        );
        assert_eq!(before.activation(), None);

        let code = before.with_activation(Some(Code));
        let allowed = code.decide("activation");
        assert!(allowed.reason().starts_with("eula accepted"), "{allowed:?}");
        assert!(allowed.is_allowed());
        assert_eq!(code.activation(), Some(Code));

        let key_file = code.with_activation(Some(KeyFile));
        let withdrawn = key_file.decide("activation");
        assert_eq!(withdrawn.reason(), KEY_FILE);
        assert!(withdrawn.is_withdrawn() && key_file.may_purge("activation"));
        assert!(key_file.is_allowed("update_identity"));
        // A later activation by code agrees again.
        assert!(
            key_file
                .with_activation(Some(Code))
                .is_allowed("activation")
        );
    }

    #[test]
    fn without_consent_its_reason_stands_until_a_key_file_withdraws() {
        let code = registry(false).with_activation(Some(Code));
        assert_eq!(code.decide("activation").reason(), "eula not accepted");
        let key_file = code.with_activation(Some(KeyFile));
        assert_eq!(key_file.decide("activation").reason(), KEY_FILE);
        // What the receipts know reaches the decision by consent too, so a
        // later activation does not hide a withdrawal.
        let withdrawn = BTreeSet::from(["eula".to_owned()]);
        let knowing = registry(false)
            .knowing_withdrawals(&catalogue(), &withdrawn)
            .with_activation(Some(Code));
        assert!(knowing.decide("activation").is_withdrawn());
    }

    #[test]
    fn an_unusable_consent_file_holds_whatever_the_activation() {
        let closed = Registry::closed(&catalogue(), "bad").with_activation(Some(KeyFile));
        assert!(closed.decide("activation").reason().contains("bad"));
        assert!(!closed.may_purge("activation"));
    }
}
