//! Validation errors: every problem found in a request, each naming the field
//! it is about, so that a user fixes them all in one round trip.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One problem with one field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldError {
    /// Path to the field as it is spelled in JSON, e.g. `containers[0].env[2].name`.
    pub field: String,
    /// What is wrong, lowercase, without a trailing period.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// All problems found in a request, in the order the fields appear.
///
/// Serializes as a JSON list of `{"field": ..., "message": ...}` objects.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ValidationErrors {
    errors: Vec<FieldError>,
}

impl ValidationErrors {
    /// An empty collection, to push problems into.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `field` is wrong because of `message`.
    pub fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    /// Whether no problem was found.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// How many problems were found.
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// The problems, in the order the fields appear in the request.
    pub fn errors(&self) -> &[FieldError] {
        &self.errors
    }

    /// The message recorded for `field`, if any (the first one if several).
    pub fn message_for(&self, field: &str) -> Option<&str> {
        self.errors
            .iter()
            .find(|e| e.field == field)
            .map(|e| e.message.as_str())
    }

    /// `Ok(())` when nothing was found, otherwise `Err(self)`.
    pub fn into_result(self) -> Result<(), Self> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationErrors {}

impl<'a> IntoIterator for &'a ValidationErrors {
    type Item = &'a FieldError;
    type IntoIter = std::slice::Iter<'a, FieldError>;

    fn into_iter(self) -> Self::IntoIter {
        self.errors.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two() -> ValidationErrors {
        let mut errors = ValidationErrors::new();
        errors.push("containers[0].image", "must not be empty");
        errors.push("name", "must not be empty");
        errors
    }

    #[test]
    fn displays_every_error_joined_by_semicolons() {
        assert_eq!(
            two().to_string(),
            "containers[0].image: must not be empty; name: must not be empty"
        );
    }

    #[test]
    fn serializes_as_a_list_of_field_and_message() {
        let json = serde_json::to_value(two()).unwrap();
        assert_eq!(
            json,
            serde_json::json!([
                {"field": "containers[0].image", "message": "must not be empty"},
                {"field": "name", "message": "must not be empty"},
            ])
        );
        let back: ValidationErrors = serde_json::from_value(json).unwrap();
        assert_eq!(back, two());
    }

    #[test]
    fn into_result_is_ok_only_when_empty() {
        assert_eq!(ValidationErrors::new().into_result(), Ok(()));
        assert_eq!(two().into_result(), Err(two()));
    }

    #[test]
    fn finds_messages_by_field() {
        let errors = two();
        assert_eq!(errors.message_for("name"), Some("must not be empty"));
        assert_eq!(errors.message_for("volumes"), None);
        assert_eq!(errors.len(), 2);
        assert_eq!((&errors).into_iter().count(), 2);
    }
}
