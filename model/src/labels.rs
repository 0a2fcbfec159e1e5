//! Labels: free `key: value` pairs on services, routes, jobs and cron
//! jobs. berth itself gives them no meaning; `berth apply --prune -l
//! KEY=VALUE` selects by them the objects a set of files owns.

use std::collections::BTreeMap;

use crate::validation::ValidationErrors;

/// Most labels one object may carry.
pub const MAX_LABELS: usize = 64;

/// Longest label key or value.
pub const MAX_LABEL_LEN: usize = 253;

/// An object's labels.
pub type Labels = BTreeMap<String, String>;

/// Checks labels under `prefix` (`labels`): keys of `[A-Za-z0-9._/-]`,
/// values of printable text, both short, so that a selector on the
/// command line can always name them.
pub fn validate_labels(prefix: &str, labels: &Labels, errors: &mut ValidationErrors) {
    if labels.len() > MAX_LABELS {
        errors.push(prefix, format!("at most {MAX_LABELS} labels"));
    }
    for (key, value) in labels {
        let field = format!("{prefix}.{key}");
        let key_ok = key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '-'));
        if key.is_empty() || key.len() > MAX_LABEL_LEN || !key_ok {
            errors.push(
                field.clone(),
                format!("key must be 1 to {MAX_LABEL_LEN} characters of [A-Za-z0-9._/-]"),
            );
        }
        if value.len() > MAX_LABEL_LEN || value.chars().any(char::is_control) {
            errors.push(
                field,
                format!(
                    "value must be at most {MAX_LABEL_LEN} characters, none a control character"
                ),
            );
        }
    }
}

/// Whether `labels` carry every pair of `selector`.
pub fn matches(labels: &Labels, selector: &Labels) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn keys_and_values_are_checked() {
        let mut errors = ValidationErrors::new();
        validate_labels(
            "labels",
            &labels(&[("app", "shop"), ("a b", "x"), ("ok", "line\nbreak")]),
            &mut errors,
        );
        let fields: Vec<&str> = errors.errors().iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["labels.a b", "labels.ok"]);
    }

    #[test]
    fn a_selector_needs_every_pair() {
        let object = labels(&[("app", "shop"), ("tier", "web")]);
        assert!(matches(&object, &labels(&[("app", "shop")])));
        assert!(matches(&object, &labels(&[])));
        assert!(!matches(
            &object,
            &labels(&[("app", "shop"), ("tier", "db")])
        ));
    }
}
