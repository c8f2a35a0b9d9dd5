//! The loader's checks that a deletion request can be kept: a clause that
//! promises one has records a request can find (the installation id, or
//! an erasure key), and an erasure key serves nothing but its clause's
//! request (docs/consent.md, "Withdrawal and erasure").

use std::collections::BTreeMap;

use super::{At, RawClause, RawPurpose};
use crate::catalogue::{Clause, ERASURE_KEY, FieldType, INSTALLATION_ID, Personal, Purpose};

/// A clause that promises a deletion request must be able to keep it:
/// every purpose it allows carries a key the request can name (the
/// installation id, or an erasure key). Reported at `deletion_request`.
pub(super) fn deletion_requests_can_be_matched(
    raw: &[RawClause],
    purposes: &BTreeMap<String, Purpose>,
    at: &mut At,
) {
    for clause in raw {
        let Some(promise) = clause.deletion_request.as_ref().filter(|d| *d.get_ref()) else {
            continue;
        };
        let id = clause.id.get_ref();
        let unmatched: Vec<&str> = purposes
            .values()
            .filter(|p| p.clauses.contains(id))
            .filter(|p| p.field(INSTALLATION_ID).is_none() && p.field(ERASURE_KEY).is_none())
            .map(|p| p.id.as_str())
            .collect();
        if !unmatched.is_empty() {
            at(
                promise.span(),
                format!(
                    "clause `{id}` promises a deletion request, but the records of {} carry neither `{INSTALLATION_ID}` nor `{ERASURE_KEY}`, so no request could find them: give each an `{ERASURE_KEY}` field (uuid, pseudonymous), or remove `deletion_request` and say in docs/consent.md why they stay unlinkable",
                    unmatched
                        .iter()
                        .map(|p| format!("`{p}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
    }
}

/// A purpose's `erasure_key` links its records for one thing only: the
/// deletion request of the clause that allows them. So each of its
/// clauses must declare one, and the key is a `uuid` marked
/// `pseudonymous` (it links records; it names no one).
pub(super) fn erasure_key_serves_a_request(
    raw: &RawPurpose,
    clauses: &BTreeMap<String, Clause>,
    at: &mut At,
) {
    let id = raw.id.get_ref();
    let Some(field) = raw.fields.iter().find(|f| f.name.get_ref() == ERASURE_KEY) else {
        return;
    };
    let span = field.name.span();
    if field.ty != FieldType::Uuid {
        at(
            span.clone(),
            format!(
                "field `{id}.{ERASURE_KEY}` is filled by the agent with a uuid: give it `type = \"uuid\"`"
            ),
        );
    }
    if field
        .personal
        .as_ref()
        .is_some_and(|p| *p.get_ref() != Personal::Pseudonymous)
    {
        at(
            span.clone(),
            format!(
                "field `{id}.{ERASURE_KEY}` links the records of one acceptance: mark it `personal = \"pseudonymous\"`"
            ),
        );
    }
    for clause in raw.clauses.get_ref() {
        if clauses
            .get(clause.get_ref())
            .is_some_and(|c| !c.deletion_request)
        {
            at(
                span.clone(),
                format!(
                    "field `{id}.{ERASURE_KEY}` serves a deletion request, but clause `{}` declares none: add `deletion_request = true` to it, or remove the field",
                    clause.get_ref()
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {

    use super::super::tests::load;

    #[test]
    fn an_erasure_key_is_a_pseudonymous_uuid_that_serves_its_clause_s_deletion_request() {
        let text = "schema = 1\n[[clause]]\nid = \"m\"\ntitle = \"t\"\nkind = \"voluntary\"\nversion = 1\ntext = \"x\"\ndeletion_request = true\n[[purpose]]\nid = \"p\"\ntitle = \"t\"\nbasis = \"consent\"\nclauses = [\"m\"]\n[[purpose.field]]\nname = \"erasure_key\"\ntype = \"uuid\"\ndescription = \"d\"\npersonal = \"pseudonymous\"\n";
        assert!(load(text).is_ok());
        let err = load(&text.replace("deletion_request = true\n", "")).unwrap_err();
        assert!(err.starts_with("cat.toml:14:8:"), "{err}");
        assert!(
            err.contains("serves a deletion request, but clause `m` declares none"),
            "{err}"
        );
        let err = load(&text.replace("\"uuid\"", "\"string\"\nformat = \"hex\"\nmax_len = 32"))
            .unwrap_err();
        assert!(err.contains("give it `type = \"uuid\"`"), "{err}");
        let err = load(&text.replace("\"pseudonymous\"", "\"none\"")).unwrap_err();
        assert!(
            err.contains("mark it `personal = \"pseudonymous\"`"),
            "{err}"
        );
    }

    #[test]
    fn a_deletion_request_nothing_could_match_is_refused_at_its_promise() {
        let text = "schema = 1\n[[clause]]\nid = \"k\"\ntitle = \"t\"\nkind = \"voluntary\"\nversion = 1\ntext = \"x\"\ndeletion_request = true\n[[purpose]]\nid = \"counts\"\ntitle = \"t\"\nbasis = \"consent\"\nclauses = [\"k\"]\n[[purpose.field]]\nname = \"n\"\ntype = \"integer\"\ndescription = \"d\"\npersonal = \"none\"\n";
        let err = load(text).unwrap_err();
        assert!(err.starts_with("cat.toml:8:20:"), "{err}");
        assert!(
            err.contains("clause `k` promises a deletion request, but the records of `counts` carry neither `installation_id` nor `erasure_key`"),
            "{err}"
        );
        // Kept by either key, or not promised.
        let id = "[[purpose.field]]\nname = \"installation_id\"\ntype = \"uuid\"\ndescription = \"d\"\npersonal = \"pseudonymous\"\n";
        assert!(load(&format!("{text}{id}")).is_ok());
        let key = id.replace("installation_id", "erasure_key");
        assert!(load(&format!("{text}{key}")).is_ok());
        assert!(load(&text.replace("deletion_request = true\n", "")).is_ok());
        assert!(load(&text.replace("deletion_request = true", "deletion_request = false")).is_ok());
    }
}
