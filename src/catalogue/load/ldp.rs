//! The loader's checks of local differential privacy (`privacy::ldp`): a
//! field's `[purpose.field.ldp]` (a mechanism that fits its type, an ε the
//! agent accepts, a domain of distinct values its declaration admits) and
//! a purpose's `privacy_budget`, which the sum of its fields' ε over the
//! reports a day it declares may not exceed. Every problem is located at
//! the key at fault.

use std::collections::BTreeSet;
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use super::At;
use crate::catalogue::{Field, FieldType, Transform};
use crate::privacy::ldp::{self, Budget, Epsilon, Ldp, Mechanism};
use crate::privacy::personal::{self, Kinds, Reading};

/// The largest domain a field may declare: a unary report carries one bit
/// per value (4096 bits: 1 KiB of hex), and the estimator one sum per value.
pub const DOMAIN_MAX: usize = 4096;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLdp {
    mechanism: Spanned<Mechanism>,
    epsilon: Spanned<f64>,
    #[serde(default)]
    domain: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    other: Option<Spanned<String>>,
}

impl RawLdp {
    /// Where its ε is written: where a budget it passes is reported.
    pub(super) fn epsilon_span(&self) -> Range<usize> {
        self.epsilon.span()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBudget {
    epsilon_per_day: Spanned<f64>,
    reports_per_day: Spanned<u32>,
}

/// `raw`, the declaration of the field `name` (`purpose.field`), checked
/// against the field as loaded; `None` when it has a problem.
pub(super) fn field_ldp(
    name: &str,
    field: &Field,
    raw: &Spanned<RawLdp>,
    at: &mut At,
) -> Option<Ldp> {
    let declared = raw.get_ref();
    let mechanism = *declared.mechanism.get_ref();
    let epsilon = epsilon(name, "epsilon", &declared.epsilon, at);
    let fits = match (mechanism.is_categorical(), field.ty) {
        (true, FieldType::String) | (false, FieldType::Integer) => true,
        (categorical, ty) => {
            at(
                declared.mechanism.span(),
                format!(
                    "field `{name}` is a {ty}, and `{mechanism}` randomises {}; use {}",
                    if categorical {
                        "a string among a declared domain"
                    } else {
                        "a count (an integer)"
                    },
                    if ty == FieldType::Integer {
                        "`geometric` for a count"
                    } else if ty == FieldType::String {
                        "`k_rr`, `unary` or `hadamard` with a `domain`"
                    } else {
                        "no `ldp` on this field"
                    }
                ),
            );
            false
        }
    };
    if let Some(transform) = field.transform
        && transform != Transform::CountryOnly
    {
        at(
            raw.span(),
            format!(
                "field `{name}` has the transform `{}`, whose values no domain can list; only `country_only` goes with `ldp`",
                transform.as_str()
            ),
        );
    }
    let (domain, other) = if mechanism.is_categorical() {
        domain(name, field, raw, at)
    } else {
        for span in [
            declared.domain.as_ref().map(Spanned::span),
            declared.other.as_ref().map(Spanned::span),
        ]
        .into_iter()
        .flatten()
        {
            at(
                span,
                format!("field `{name}` is a count: `geometric` takes no `domain` or `other`"),
            );
        }
        (Some(Vec::new()), None)
    };
    Some(Ldp {
        mechanism,
        epsilon: epsilon?,
        domain: domain?,
        other,
    })
    .filter(|_| fits)
}

/// An ε at its key, or `None` after saying what is wrong with it.
fn epsilon(name: &str, key: &str, raw: &Spanned<f64>, at: &mut At) -> Option<Epsilon> {
    Epsilon::new(*raw.get_ref())
        .map_err(|err| {
            at(
                raw.span(),
                format!(
                    "field `{name}`: {key} = {} is refused: {err}; the built-in catalogues use 0.5 to 2 (docs/consent.md, \"Local differential privacy\")",
                    raw.get_ref()
                ),
            )
        })
        .ok()
}

/// The domain (distinct values the field's declaration admits, none
/// looking like personal data: k-ary randomized response sends them as
/// they are) and `other`, one of them.
fn domain(
    name: &str,
    field: &Field,
    raw: &Spanned<RawLdp>,
    at: &mut At,
) -> (Option<Vec<String>>, Option<String>) {
    let declared = raw.get_ref();
    let Some(domain) = &declared.domain else {
        at(
            raw.span(),
            format!(
                "field `{name}` uses `{}`, which randomises among the values the field may take: list them, `domain = [\"…\", …]` (at least 2)",
                declared.mechanism.get_ref()
            ),
        );
        return (None, None);
    };
    let values = domain.get_ref();
    if values.len() < 2 || values.len() > DOMAIN_MAX {
        at(
            domain.span(),
            format!(
                "field `{name}` lists {} values in its domain: a domain has 2 to {DOMAIN_MAX}",
                values.len()
            ),
        );
    }
    let mut seen = BTreeSet::new();
    for value in values {
        let text = value.get_ref();
        let problem = if !seen.insert(text.as_str()) {
            Some(format!("field `{name}` lists `{text}` twice in its domain"))
        } else if let Some(kind) = personal::find(text, Kinds::NONE, Reading::Text) {
            Some(format!(
                "field `{name}`'s domain lists `{text}`, which looks like {}: a domain value may be sent as it is",
                kind.in_words()
            ))
        } else if field.transform.is_none() && field.admits(text).is_err() {
            Some(format!(
                "field `{name}`'s domain lists `{text}`, which its own declaration (`format` or `values`) does not admit"
            ))
        } else {
            None
        };
        if let Some(problem) = problem {
            at(value.span(), problem);
        }
    }
    let other = declared.other.as_ref().and_then(|other| {
        let ok = seen.contains(other.get_ref().as_str());
        if !ok {
            at(
                other.span(),
                format!(
                    "field `{name}`: other = \"{}\" is not in its domain; a value outside the domain is reported as `other`, so it must be one of them",
                    other.get_ref()
                ),
            );
        }
        ok.then(|| other.get_ref().clone())
    });
    let list = values.iter().map(|v| v.get_ref().clone()).collect();
    (Some(list), other)
}

/// The purpose's budget, and the check that its fields' ε over its
/// reports a day stay within it: reported at the field whose ε passes it,
/// or at the budget when there is nothing to spend it on.
pub(super) fn budget(
    purpose: &str,
    raw: Option<&Spanned<RawBudget>>,
    fields: &[(Range<usize>, &Ldp)],
    at: &mut At,
) -> Option<Budget> {
    let Some(raw) = raw else {
        if let Some((span, _)) = fields.first() {
            at(
                span.clone(),
                format!(
                    "purpose `{purpose}` randomises fields but declares no privacy budget: add `privacy_budget = {{ epsilon_per_day = …, reports_per_day = … }}` to the purpose (docs/catalogue.md, \"Local differential privacy\")"
                ),
            );
        }
        return None;
    };
    if fields.is_empty() {
        at(
            raw.span(),
            format!(
                "purpose `{purpose}` declares a privacy budget but randomises no field: remove it, or give a field an `ldp` table"
            ),
        );
        return None;
    }
    let declared = raw.get_ref();
    let epsilon_per_day = epsilon(purpose, "epsilon_per_day", &declared.epsilon_per_day, at);
    let reports = *declared.reports_per_day.get_ref();
    if reports == 0 {
        at(
            declared.reports_per_day.span(),
            format!("purpose `{purpose}`: reports_per_day must be 1 or more"),
        );
        return None;
    }
    let budget = Budget {
        epsilon_per_day: epsilon_per_day?,
        reports_per_day: reports,
    };
    let mut per_report = 0.0;
    for (span, field) in fields {
        per_report += field.epsilon.get();
        let spent = budget.spend(per_report);
        // A hair of tolerance: 0.1 × 10 is not above 1.
        if spent > budget.epsilon_per_day.get() * (1.0 + 1e-9) {
            at(
                span.clone(),
                format!(
                    "purpose `{purpose}` would spend ε = {} a day by here: ε = {} a report (its fields' ε so far, sequential composition) × {reports} reports a day (its declared schedule), over its privacy_budget of ε = {} a day; lower the fields' epsilon, lower reports_per_day, or raise epsilon_per_day",
                    ldp::round(spent),
                    ldp::round(per_report),
                    budget.epsilon_per_day
                ),
            );
            return None;
        }
    }
    Some(budget)
}

#[cfg(test)]
mod tests {
    use crate::privacy::ldp::Mechanism;

    use super::super::tests::load;

    /// Lines 1-7 the clause, 8-13 the purpose (its budget on 13), 14-19
    /// the country field, 20-24 its `ldp` table, then the count field,
    /// its ε on line 32.
    const PURPOSE: &str = "schema = 1\n[[clause]]\nid = \"eula\"\ntitle = \"t\"\nkind = \"eula\"\nversion = 1\ntext = \"x\"\n\
[[purpose]]\nid = \"geo\"\ntitle = \"t\"\nbasis = \"contract\"\nclauses = [\"eula\"]\nprivacy_budget = { epsilon_per_day = 4, reports_per_day = 2 }\n\
[[purpose.field]]\nname = \"country\"\ntype = \"string\"\npersonal = \"none\"\nformat = \"country\"\ndescription = \"d\"\n\
[purpose.field.ldp]\nmechanism = \"hadamard\"\nepsilon = 1\ndomain = [\"DE\", \"FR\", \"ZZ\"]\nother = \"ZZ\"\n\
[[purpose.field]]\nname = \"scans\"\ntype = \"integer\"\npersonal = \"none\"\ndescription = \"d\"\n\
[purpose.field.ldp]\nmechanism = \"geometric\"\nepsilon = 0.5\n";

    #[test]
    fn a_declaration_loads_with_its_budget() {
        let catalogue = load(PURPOSE).unwrap();
        let purpose = catalogue.purpose("geo").unwrap();
        let country = purpose.field("country").unwrap().ldp.as_ref().unwrap();
        assert_eq!(country.mechanism, Mechanism::Hadamard);
        assert_eq!(country.epsilon.get(), 1.0);
        assert_eq!(country.domain, ["DE", "FR", "ZZ"]);
        assert_eq!(country.other.as_deref(), Some("ZZ"));
        let scans = purpose.field("scans").unwrap().ldp.as_ref().unwrap();
        assert_eq!(scans.mechanism, Mechanism::Geometric);
        assert_eq!(purpose.epsilon_per_report(), 1.5);
        let budget = purpose.privacy_budget.unwrap();
        assert_eq!(
            (budget.epsilon_per_day.get(), budget.reports_per_day),
            (4.0, 2)
        );
    }

    #[test]
    fn a_bad_epsilon_is_located() {
        for (bad, why) in [
            ("0", "above 0"),
            ("-1", "above 0"),
            ("11", "protects nothing"),
            ("nan", "above 0"),
        ] {
            let err =
                load(&PURPOSE.replace("epsilon = 1\n", &format!("epsilon = {bad}\n"))).unwrap_err();
            assert!(err.starts_with("cat.toml:22:11:"), "{bad}: {err}");
            assert!(
                err.contains("field `geo.country`: epsilon = ") && err.contains(why),
                "{err}"
            );
        }
        let err = load(&PURPOSE.replace("epsilon = 1\n", "epsilon = \"one\"\n")).unwrap_err();
        assert!(err.starts_with("cat.toml:22:"), "{err}");
    }

    #[test]
    fn a_categorical_mechanism_needs_a_domain_its_field_admits() {
        let missing = PURPOSE.replace("domain = [\"DE\", \"FR\", \"ZZ\"]\nother = \"ZZ\"\n", "");
        let err = load(&missing).unwrap_err();
        assert!(err.starts_with("cat.toml:20:1:"), "{err}");
        assert!(
            err.contains("uses `hadamard`, which randomises among the values"),
            "{err}"
        );

        let err = load(&PURPOSE.replace("\"FR\", \"ZZ\"", "\"France\", \"ZZ\"")).unwrap_err();
        assert!(err.starts_with("cat.toml:23:17:"), "{err}");
        assert!(
            err.contains("lists `France`, which its own declaration"),
            "{err}"
        );

        let err = load(&PURPOSE.replace("\"FR\", \"ZZ\"", "\"DE\", \"ZZ\"")).unwrap_err();
        assert!(err.contains("lists `DE` twice"), "{err}");

        let err = load(&PURPOSE.replace("[\"DE\", \"FR\", \"ZZ\"]", "[\"ZZ\"]")).unwrap_err();
        assert!(
            err.contains("lists 1 values in its domain: a domain has 2 to 4096"),
            "{err}"
        );

        let err = load(&PURPOSE.replace("other = \"ZZ\"", "other = \"XX\"")).unwrap_err();
        assert!(err.starts_with("cat.toml:24:9:"), "{err}");
        assert!(err.contains("other = \"XX\" is not in its domain"), "{err}");

        let err = load(
            &PURPOSE
                .replace("\"FR\", \"ZZ\"", "\"FR\", \"a@b.example\"")
                .replace("other = \"ZZ\"\n", ""),
        )
        .unwrap_err();
        assert!(err.contains("looks like an e-mail address"), "{err}");
    }

    #[test]
    fn a_mechanism_that_does_not_fit_its_field_s_type_is_located() {
        let err = load(&PURPOSE.replace("\"hadamard\"", "\"geometric\"")).unwrap_err();
        assert!(err.starts_with("cat.toml:21:13:"), "{err}");
        assert!(
            err.contains("field `geo.country` is a string, and `geometric` randomises a count"),
            "{err}"
        );
        assert!(err.contains("takes no `domain` or `other`"), "{err}");

        let err = load(&PURPOSE.replace("\"geometric\"", "\"k_rr\"")).unwrap_err();
        assert!(
            err.contains("field `geo.scans` is a integer, and `k_rr` randomises a string"),
            "{err}"
        );
        assert!(err.contains("use `geometric` for a count"), "{err}");

        let err = load(&PURPOSE.replace("\"geometric\"", "\"laplace\"")).unwrap_err();
        assert!(err.contains("laplace"), "{err}");
        let err = load(&PURPOSE.replace("epsilon = 0.5\n", "epsilon = 0.5\nsensitivity = 2\n"))
            .unwrap_err();
        assert!(err.contains("sensitivity"), "{err}");
    }

    #[test]
    fn a_budget_is_required_and_a_schedule_over_it_is_refused_at_the_field_that_passes_it() {
        let err = load(&PURPOSE.replace(
            "privacy_budget = { epsilon_per_day = 4, reports_per_day = 2 }\n",
            "",
        ))
        .unwrap_err();
        assert!(err.starts_with("cat.toml:21:11:"), "{err}");
        assert!(
            err.contains("purpose `geo` randomises fields but declares no privacy budget"),
            "{err}"
        );

        // 1.5 a report × 3 reports = 4.5 > 4: the second field passes it.
        let over = PURPOSE.replace("reports_per_day = 2", "reports_per_day = 3");
        let err = load(&over).unwrap_err();
        assert!(err.starts_with("cat.toml:32:11:"), "{err}");
        assert!(
            err.contains("would spend ε = 4.5 a day by here: ε = 1.5 a report"),
            "{err}"
        );
        assert!(
            err.contains(
                "× 3 reports a day (its declared schedule), over its privacy_budget of ε = 4 a day"
            ),
            "{err}"
        );
        // The first field alone already passes 2.5 at 5 reports.
        let err = load(&PURPOSE.replace("reports_per_day = 2", "reports_per_day = 5")).unwrap_err();
        assert!(err.starts_with("cat.toml:22:11:"), "{err}");
        // Exactly at the budget is within it.
        assert!(load(&PURPOSE.replace("epsilon_per_day = 4", "epsilon_per_day = 3")).is_ok());

        let err = load(&PURPOSE.replace("reports_per_day = 2", "reports_per_day = 0")).unwrap_err();
        assert!(err.contains("reports_per_day must be 1 or more"), "{err}");

        let unused = PURPOSE.replace("[purpose.field.ldp]\nmechanism = \"geometric\"\nepsilon = 0.5\n", "")
            .replace("[purpose.field.ldp]\nmechanism = \"hadamard\"\nepsilon = 1\ndomain = [\"DE\", \"FR\", \"ZZ\"]\nother = \"ZZ\"\n", "");
        let err = load(&unused).unwrap_err();
        assert!(err.starts_with("cat.toml:13:"), "{err}");
        assert!(
            err.contains("declares a privacy budget but randomises no field"),
            "{err}"
        );
    }
}
