//! What withdrawing does, in words: how to stop a purpose, and what
//! happens to what a clause's records already sent (a deletion request
//! naming the key they carry, or none, and why). Every sentence states
//! what `daemon::consent` and `consent::deletion` do (docs/consent.md,
//! "Withdrawal and erasure").

use super::ClauseDisclosure;
use crate::catalogue::{Basis, Catalogue, Clause, ERASURE_KEY, INSTALLATION_ID, Purpose, Region};

/// How to stop a purpose, in the words of what `consent revoke` does, and
/// what each allowing clause's withdrawal does to these records.
pub(super) fn of_purpose(
    purpose: &Purpose,
    allowing: &[&ClauseDisclosure],
    region: Region,
) -> String {
    let commands = allowing
        .iter()
        .map(|c| format!("`consentry consent revoke {}`", c.id))
        .collect::<Vec<_>>()
        .join(" or ");
    let mut text = match purpose.basis {
        Basis::Consent => format!(
            "Opt-in: nothing is sent until you accept it, and you can withdraw at any time with {commands}. Sending stops at once and the records still queued are deleted."
        ),
        Basis::Contract | Basis::LegitimateInterest => format!(
            "Part of the licence agreement ({}). Withdrawing that clause ({commands}) means you no longer accept the licence terms for data provision: this purpose stops sending at once and its queued records are deleted.",
            if purpose.basis == Basis::Contract {
                "needed to perform it"
            } else {
                "the vendor's legitimate interest, disclosed in it"
            }
        ),
    };
    if allowing.len() > 1 {
        text.push_str(" It stops only when no clause allowing it is accepted.");
    }
    for clause in allowing {
        text.push(' ');
        text.push_str(&what_was_sent(purpose, clause));
    }
    if purpose.sale_or_sharing && region == Region::UsCa {
        text.push_str(" An opt-out preference signal also stops it (see Opt-out signals).");
    }
    text
}

/// What withdrawing `clause` does to the records of `purpose` already
/// sent: the three cases of docs/consent.md.
fn what_was_sent(purpose: &Purpose, clause: &ClauseDisclosure) -> String {
    let id = &clause.id;
    if clause.deletion_request {
        let key = if purpose.field(ERASURE_KEY).is_some() {
            "the erasure key"
        } else {
            "the installation identifier"
        };
        return format!(
            "Withdrawing {id} also asks the vendor to erase what was sent under it: one deletion request naming {key} these records carry, and the purposes withdrawn; {key} is then replaced, so what is sent after a new acceptance carries a new one and matches no request."
        );
    }
    if purpose.field(INSTALLATION_ID).is_some() {
        return format!(
            "Withdrawing {id} asks for no erasure: what was sent keeps the installation identifier it carried, which is then replaced, so what is sent after a new acceptance carries a new one."
        );
    }
    format!(
        "Withdrawing {id} asks for no erasure: these records carry no identifier of this installation, so no request could name them; none is sent, and they stay unlinkable to this installation."
    )
}

/// What withdrawing `clause` does to what its records already sent, for
/// the clause's own table.
pub(super) fn erasure(catalogue: &Catalogue, clause: &Clause) -> String {
    let purposes: Vec<&Purpose> = catalogue
        .purposes()
        .filter(|p| p.clauses.contains(&clause.id))
        .collect();
    let list = |keep: &dyn Fn(&Purpose) -> bool| {
        purposes
            .iter()
            .filter(|p| keep(p))
            .map(|p| format!("`{}`", p.id))
            .collect::<Vec<_>>()
    };
    let keyed = list(&|p| p.field(ERASURE_KEY).is_some());
    let with_id = list(&|p| p.field(ERASURE_KEY).is_none() && p.field(INSTALLATION_ID).is_some());
    let bare = list(&|p| p.field(ERASURE_KEY).is_none() && p.field(INSTALLATION_ID).is_none());
    if clause.deletion_request {
        let mut named = Vec::new();
        if !with_id.is_empty() {
            named.push(format!(
                "the installation identifier its records carry ({})",
                with_id.join(", ")
            ));
        }
        if !keyed.is_empty() {
            named.push(format!("the erasure key its records carry ({}: the same in every record sent under one acceptance, which it links to each other and to nothing else)", keyed.join(", ")));
        }
        return format!(
            "Withdrawing it sends one deletion request naming {}, so that the vendor can find and erase every record sent under it; it is then replaced, so what is sent after a new acceptance carries a new one and matches no request.",
            named.join(" and ")
        );
    }
    let mut text = "Withdrawing it asks for no erasure.".to_owned();
    if !with_id.is_empty() {
        text.push_str(&format!(
            " Records of {} keep the installation identifier they carried; it is replaced, so what is sent after a new acceptance carries a new one.",
            with_id.join(", ")
        ));
    }
    if !bare.is_empty() {
        text.push_str(&format!(
            " Records of {} carry no identifier of this installation: no request could name them, so none is sent, and they stay unlinkable to this installation.",
            bare.join(", ")
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::{Disclosure, markdown};
    use crate::catalogue::{Catalogue, Region};

    const MONTH: Duration = Duration::from_secs(30 * 86_400);

    /// Issue 20, item 4 D: per clause, a request that names what its
    /// records carry, or none, and why they stay unlinkable.
    #[test]
    fn each_clause_says_what_withdrawing_it_does_to_what_was_sent() {
        let catalogue = Catalogue::embedded();
        let eu = Disclosure::new(&catalogue, Region::Eu, MONTH);
        let clause = |id: &str| &eu.clauses.iter().find(|c| c.id == id).unwrap().erasure;
        assert!(
            clause("ksn").starts_with("Withdrawing it asks for no erasure.")
                && clause("ksn").contains("carry no identifier of this installation")
                && clause("ksn").contains("stay unlinkable"),
            "{}",
            clause("ksn")
        );
        assert!(
            clause("marketing").contains(
                "one deletion request naming the erasure key its records carry (`promotions`"
            ),
            "{}",
            clause("marketing")
        );
        assert!(
            clause("third_party_analytics").contains(
                "one deletion request naming the installation identifier its records carry (`third_party_user_count`)"
            ),
            "{}",
            clause("third_party_analytics")
        );
        let purpose = |id: &str| &eu.purposes.iter().find(|p| p.id == id).unwrap().withdrawal;
        assert!(purpose("ksn_threat_reports").contains(
            "Withdrawing ksn asks for no erasure: these records carry no identifier of this installation"
        ));
        assert!(
            purpose("promotions")
                .contains("one deletion request naming the erasure key these records carry")
        );
        let global = Disclosure::new(&catalogue, Region::Global, MONTH);
        let eula = &global.clauses[0].erasure;
        assert!(
            eula.contains(
                "Records of `activation`, `update_identity` keep the installation identifier"
            ),
            "{eula}"
        );
        let markdown = markdown::render(&eu);
        assert!(
            markdown
                .contains("| What was sent, when withdrawn | Withdrawing it asks for no erasure.")
        );
    }
}
