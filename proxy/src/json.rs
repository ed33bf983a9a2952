//! Typed reads of Docker's JSON documents, edited in place as `serde_json::Value`.
//!
//! Docker's schema belongs to Docker: fields it adds later, key order and number formats must
//! survive a rewrite, so bodies are never round-tripped through structs. These getters say
//! what shape they expected when a document has another; the caller then leaves the request
//! alone and lets the daemon answer it with its own error.

use serde_json::{Map, Value};
use thiserror::Error;

/// A field of an unexpected JSON type.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("wrong type for {field}: expected {expected}")]
pub struct WrongType {
    /// The field's name.
    pub field: &'static str,
    /// What was expected there.
    pub expected: &'static str,
}

/// A string field; absent or null reads as `None`.
///
/// # Errors
/// When the field holds anything but a string or null.
pub fn string<'a>(
    object: &'a Map<String, Value>,
    field: &'static str,
) -> Result<Option<&'a str>, WrongType> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(WrongType {
            field,
            expected: "a string",
        }),
    }
}

/// A list of strings the way Docker reads `Entrypoint` and `Cmd`: absent or null is `None`
/// (which differs from an explicit `[]`), and a lone string is a one-element list.
///
/// # Errors
/// When the field holds anything else.
pub fn string_list(
    object: &Map<String, Value>,
    field: &'static str,
) -> Result<Option<Vec<String>>, WrongType> {
    let wrong = WrongType {
        field,
        expected: "a string or an array of strings",
    };
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(vec![s.clone()])),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned).ok_or(wrong.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(wrong),
    }
}

/// An object field, created empty when absent or null (as for `HostConfig`).
///
/// # Errors
/// When the field holds anything but an object or null.
pub fn object_mut<'a>(
    object: &'a mut Map<String, Value>,
    field: &'static str,
) -> Result<&'a mut Map<String, Value>, WrongType> {
    let slot = object
        .entry(field)
        .or_insert_with(|| Value::Object(Map::new()));
    if slot.is_null() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut().ok_or(WrongType {
        field,
        expected: "an object",
    })
}

/// An object field, read only; absent or null reads as `None`.
///
/// # Errors
/// When the field holds anything but an object or null.
pub fn object<'a>(
    object: &'a Map<String, Value>,
    field: &'static str,
) -> Result<Option<&'a Map<String, Value>>, WrongType> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(inner)) => Ok(Some(inner)),
        Some(_) => Err(WrongType {
            field,
            expected: "an object",
        }),
    }
}

/// A JSON array of strings.
pub fn strings(items: impl IntoIterator<Item = impl Into<String>>) -> Value {
    Value::Array(items.into_iter().map(|s| Value::String(s.into())).collect())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn string_lists_read_like_docker() {
        let cases = [
            (json!({}), Ok(None)),
            (json!({"Cmd": null}), Ok(None)),
            (json!({"Cmd": []}), Ok(Some(vec![]))),
            (
                json!({"Cmd": "echo a b"}),
                Ok(Some(vec!["echo a b".to_owned()])),
            ),
            (
                json!({"Cmd": ["echo", "a"]}),
                Ok(Some(vec!["echo".to_owned(), "a".to_owned()])),
            ),
        ];
        for (doc, want) in cases {
            assert_eq!(string_list(&obj(doc.clone()), "Cmd"), want, "{doc}");
        }
        for doc in [
            json!({"Cmd": 1}),
            json!({"Cmd": ["a", 1]}),
            json!({"Cmd": {}}),
        ] {
            assert!(string_list(&obj(doc.clone()), "Cmd").is_err(), "{doc}");
        }
    }

    #[test]
    fn object_mut_creates_missing_and_null_objects_only() {
        let mut doc = obj(json!({"A": null, "C": 3}));
        object_mut(&mut doc, "A")
            .unwrap()
            .insert("x".into(), json!(1));
        object_mut(&mut doc, "B").unwrap();
        assert_eq!(
            Value::Object(doc.clone()),
            json!({"A": {"x": 1}, "C": 3, "B": {}})
        );
        assert!(object_mut(&mut doc, "C").is_err());
    }
}
