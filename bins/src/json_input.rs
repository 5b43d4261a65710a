//! Reading JSON input by hand, field by field, so that every error names the
//! field it is about (`state.pushed: expected a boolean, got a string`).
//!
//! serde's derive would report "invalid type … at line 1 column 30", which
//! leaves the user counting characters; the policy tool is for people editing
//! JSON by hand.

use std::fmt;

use serde_json::{Map, Value};

/// One problem with the input, and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError {
    /// Dotted path of the field (`issues[3].number`); empty for the whole input.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for InputError {}

/// Parses the whole input text.
pub fn parse_document(text: &str) -> Result<Value, InputError> {
    serde_json::from_str(text).map_err(|e| InputError {
        path: String::new(),
        message: format!("input is not valid JSON: {e}"),
    })
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A JSON object being read, with its path.
#[derive(Debug, Clone)]
pub struct Obj<'a> {
    path: String,
    map: &'a Map<String, Value>,
}

impl<'a> Obj<'a> {
    /// The value at `path` must be an object.
    pub fn new(path: impl Into<String>, value: &'a Value) -> Result<Self, InputError> {
        let path = path.into();
        match value {
            Value::Object(map) => Ok(Obj { path, map }),
            other => Err(InputError {
                message: format!("expected an object, got {}", kind(other)),
                path,
            }),
        }
    }

    /// The path of `key` within this object.
    pub fn path_of(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn err(&self, key: &str, message: impl Into<String>) -> InputError {
        InputError {
            path: self.path_of(key),
            message: message.into(),
        }
    }

    fn expected(&self, key: &str, what: &str, got: &Value) -> InputError {
        self.err(key, format!("expected {what}, got {}", kind(got)))
    }

    /// Refuses keys outside `allowed` (a typo would otherwise silently take
    /// the default).
    pub fn deny_unknown(&self, allowed: &[&str]) -> Result<(), InputError> {
        match self.map.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(key) => Err(self.err(
                key,
                format!("unknown field (expected one of: {})", allowed.join(", ")),
            )),
            None => Ok(()),
        }
    }

    /// The value at `key`; an absent key and `null` are both `None`.
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    /// The entries of this object, in input order.
    pub fn entries(&self) -> impl Iterator<Item = (&'a String, &'a Value)> {
        self.map.iter()
    }

    /// A required value.
    pub fn required(&self, key: &str, what: &str) -> Result<&'a Value, InputError> {
        self.get(key)
            .ok_or_else(|| self.err(key, format!("missing (expected {what})")))
    }

    /// An optional string.
    pub fn opt_str(&self, key: &str) -> Result<Option<&'a str>, InputError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.expected(key, "a string", other)),
        }
    }

    /// A required, non-blank string.
    pub fn req_str(&self, key: &str) -> Result<&'a str, InputError> {
        match self.required(key, "a string")? {
            Value::String(s) if !s.trim().is_empty() => Ok(s),
            Value::String(_) => Err(self.err(key, "must not be empty")),
            other => Err(self.expected(key, "a string", other)),
        }
    }

    /// An optional boolean.
    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>, InputError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(self.expected(key, "a boolean", other)),
        }
    }

    /// An optional whole number, 0 or more.
    pub fn opt_u64(&self, key: &str) -> Result<Option<u64>, InputError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => as_u64(v)
                .map(Some)
                .ok_or_else(|| self.expected(key, "a whole number, 0 or more", v)),
        }
    }

    /// An optional whole number that fits 32 bits.
    pub fn opt_u32(&self, key: &str) -> Result<Option<u32>, InputError> {
        match self.opt_u64(key)? {
            None => Ok(None),
            Some(n) => u32::try_from(n)
                .map(Some)
                .map_err(|_| self.err(key, format!("{n} is too large (at most 4294967295)"))),
        }
    }

    /// A required whole number, 1 or more.
    pub fn req_positive(&self, key: &str) -> Result<u64, InputError> {
        let value = self.required(key, "a whole number, 1 or more")?;
        match as_u64(value) {
            Some(n) if n >= 1 => Ok(n),
            _ => Err(self.expected(key, "a whole number, 1 or more", value)),
        }
    }

    /// An optional whole number, possibly negative.
    pub fn opt_i64(&self, key: &str) -> Result<Option<i64>, InputError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| self.expected(key, "a whole number", v)),
        }
    }

    /// An optional array, each element read by `item` (given its path).
    pub fn opt_list<T>(
        &self,
        key: &str,
        mut item: impl FnMut(String, &'a Value) -> Result<T, InputError>,
    ) -> Result<Option<Vec<T>>, InputError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| item(format!("{}[{i}]", self.path_of(key)), v))
                .collect::<Result<Vec<T>, _>>()
                .map(Some),
            Some(other) => Err(self.expected(key, "an array", other)),
        }
    }
}

/// A JSON number that is a whole number ≥ 0 (`3.0` counts, `3.5` does not).
fn as_u64(value: &Value) -> Option<u64> {
    value.as_u64().or_else(|| {
        value
            .as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= 9_007_199_254_740_992.0)
            .and_then(|f| format!("{f:.0}").parse().ok())
    })
}

/// An array element that must be a string.
pub fn string_item(path: String, value: &Value) -> Result<String, InputError> {
    match value {
        Value::String(s) => Ok(s.clone()),
        other => Err(InputError {
            path,
            message: format!("expected a string, got {}", kind(other)),
        }),
    }
}

/// An array element that must be a whole number, 1 or more.
pub fn positive_item(path: String, value: &Value) -> Result<u64, InputError> {
    match as_u64(value) {
        Some(n) if n >= 1 => Ok(n),
        _ => Err(InputError {
            path,
            message: format!("expected a whole number, 1 or more, got {}", kind(value)),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn errors_name_the_field() {
        let doc = json!({"state": {"pushed": "yes", "n": -1, "list": [1, "x"]}});
        let root = Obj::new("", &doc).unwrap();
        let state = Obj::new(root.path_of("state"), root.get("state").unwrap()).unwrap();
        assert_eq!(
            state.opt_bool("pushed").unwrap_err().to_string(),
            "state.pushed: expected a boolean, got a string"
        );
        assert_eq!(
            state.opt_u64("n").unwrap_err().to_string(),
            "state.n: expected a whole number, 0 or more, got a number"
        );
        assert_eq!(
            state
                .opt_list("list", positive_item)
                .unwrap_err()
                .to_string(),
            "state.list[1]: expected a whole number, 1 or more, got a string"
        );
        assert_eq!(
            state.req_str("missing").unwrap_err().to_string(),
            "state.missing: missing (expected a string)"
        );
        assert_eq!(
            state.deny_unknown(&["pushed"]).unwrap_err().to_string(),
            "state.n: unknown field (expected one of: pushed)"
        );
        assert_eq!(state.opt_u64("absent").unwrap(), None);
    }

    #[test]
    fn whole_floats_count_as_numbers() {
        assert_eq!(as_u64(&json!(3.0)), Some(3));
        assert_eq!(as_u64(&json!(3.5)), None);
        assert_eq!(as_u64(&json!(-3)), None);
        assert_eq!(as_u64(&json!(1e300)), None);
    }
}
