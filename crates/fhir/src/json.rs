//! Strict JSON reading shared by the resource and Bundle parsers: UTF-8 first, then one pass that
//! refuses duplicate object keys and records every `"reference"` string in document order.
//!
//! `serde_json::Value` keeps objects in a `BTreeMap`, so it forgets both key order and duplicate
//! keys. Both matter here: FHIR JSON forbids duplicate properties, and a parser that silently
//! kept the last `subject` while another system read the first would file a record under the
//! wrong patient. So values are built by this crate's own visitor, which sees every key as it
//! comes.

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::FhirError;

/// Checks that `bytes` are UTF-8, reporting the first bad byte's line and column.
pub(crate) fn utf8(bytes: &[u8]) -> Result<&str, FhirError> {
    std::str::from_utf8(bytes).map_err(|error| {
        let (line, column) = position(bytes, error.valid_up_to());
        FhirError::Json {
            line,
            column,
            reason: "invalid UTF-8".to_owned(),
        }
    })
}

/// The 1-based line and column of byte `offset` (columns count bytes, as serde_json's do).
pub(crate) fn position(bytes: &[u8], offset: usize) -> (usize, usize) {
    let before = &bytes[..offset.min(bytes.len())];
    let line = before.iter().filter(|&&byte| byte == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&byte| byte == b'\n')
        .map_or(0, |newline| newline + 1);
    (line, before.len() - line_start + 1)
}

/// Turns a serde_json error into `FhirError::Json`, keeping the position apart from the reason.
pub(crate) fn json_error(error: &serde_json::Error) -> FhirError {
    let (line, column) = (error.line(), error.column());
    let text = error.to_string();
    let suffix = format!(" at line {line} column {column}");
    let reason = text.strip_suffix(&suffix).unwrap_or(&text).to_owned();
    FhirError::Json {
        line,
        column,
        reason,
    }
}

/// Parses one JSON value from `text` strictly (no duplicate keys, nothing after it), returning it
/// with the `"reference"` strings it holds, in document order.
pub(crate) fn parse_strict(text: &str) -> Result<(Value, Vec<String>), FhirError> {
    let mut references = Vec::new();
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value = Strict {
        references: Some(&mut references),
    }
    .deserialize(&mut deserializer)
    .and_then(|value| deserializer.end().map(|()| value))
    .map_err(|error| json_error(&error))?;
    Ok((value, references))
}

/// How a JSON value's kind reads in an error message.
pub(crate) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A seed that reads any JSON value, refusing duplicate keys and, when `references` is given,
/// recording every `"reference"` member whose value is a string.
pub(crate) struct Strict<'r> {
    pub(crate) references: Option<&'r mut Vec<String>>,
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        // serde_json counts nesting in `deserialize_any` and stops at its recursion limit (128),
        // so hostile nesting ends in an error, not a stack overflow.
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Strict {
            references: self.references.as_deref_mut(),
        })? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom(format_args!("duplicate key {key:?}")));
            }
            let value = map.next_value_seed(Strict {
                references: self.references.as_deref_mut(),
            })?;
            if key == "reference"
                && let (Value::String(reference), Some(references)) =
                    (&value, self.references.as_deref_mut())
            {
                references.push(reference.clone());
            }
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Strict parsing refuses what `serde_json::Value` would silently accept, and finds
    /// references in document order, not key order.
    #[test]
    fn strict_parse() {
        fn check(text: &str, expected: &str) {
            let got = match parse_strict(text) {
                Ok((_, references)) => format!("ok {references:?}"),
                Err(error) => error.to_string(),
            };
            assert_eq!(got, expected, "input {text:?}");
        }
        check(r#"{"a": 1}"#, "ok []");
        check(
            r#"{"z": {"reference": "B/1"}, "a": [{"reference": "A/1"}], "reference": "C/1"}"#,
            r#"ok ["B/1", "A/1", "C/1"]"#,
        );
        check(r#"{"reference": 5}"#, "ok []");
        check(
            r#"{"a": 1, "a": 2}"#,
            r#"not valid JSON at line 1 column 12: duplicate key "a""#,
        );
        check(
            "{\"a\": {\"b\": 1,\n \"b\": 2}}",
            r#"not valid JSON at line 2 column 4: duplicate key "b""#,
        );
        check(
            "{} {}",
            "not valid JSON at line 1 column 4: trailing characters",
        );
        check(
            "",
            "not valid JSON at line 1 column 0: EOF while parsing a value",
        );
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        check(
            &deep,
            "not valid JSON at line 1 column 128: recursion limit exceeded",
        );
    }

    /// UTF-8 errors name the line and column of the first bad byte.
    #[test]
    fn utf8_errors_have_positions() {
        let error = utf8(b"{\n  \"a\": \"\xff\"}").err();
        assert_eq!(
            error,
            Some(FhirError::Json {
                line: 2,
                column: 9,
                reason: "invalid UTF-8".to_owned()
            })
        );
    }
}
