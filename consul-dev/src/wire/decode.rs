//! The Go-json-like decoder: request bodies parsed into a [`serde_json::Value`] and read
//! field by field ([`Fields`]) the way Consul's decoder reads them, with Go's error texts
//! ([`DecodeError`]). Uses only `go` (durations).
//!
//! Request bodies are decoded by hand rather than with derived `Deserialize` impls,
//! because Consul's decoder matches keys case-insensitively, accepts snake_case aliases,
//! rejects unknown keys with Go's wording and accepts durations either as Go duration
//! strings or as integer nanoseconds. Reproducing all of that with serde attributes is not
//! possible; a small explicit decoder is clearer.

use std::collections::BTreeMap;

use serde_json::Value;

use super::go::parse_go_duration;

/// A decode failure; the text follows `Request decode failed: `.
#[derive(Debug)]
pub(crate) struct DecodeError(pub(crate) String);

/// The JSON type names Go uses in `cannot unmarshal X into ...`.
fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Parses a request body, mapping the empty body to Go's `EOF`.
///
/// serde_json stops at 128 levels of nesting (its recursion limit, which keeps a hostile
/// body from overflowing the stack); the refusal reads as Go's `exceeded max depth`, which
/// Go's decoder gives only past 10,000 levels (a listed deviation).
pub(crate) fn parse_body(body: &[u8]) -> Result<Value, DecodeError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(DecodeError("EOF".to_owned()));
    }
    serde_json::from_slice(body).map_err(|e| {
        if e.is_eof() {
            DecodeError("unexpected EOF".to_owned())
        } else if e.to_string().starts_with("recursion limit exceeded") {
            DecodeError("exceeded max depth".to_owned())
        } else {
            DecodeError(go_syntax_error(body, &e))
        }
    })
}

/// Rewords a serde syntax error the way Go's `encoding/json` words it
/// (`invalid character 'x' looking for beginning of value`).
fn go_syntax_error(body: &[u8], e: &serde_json::Error) -> String {
    let text = String::from_utf8_lossy(body);
    let found = text
        .lines()
        .nth(e.line().saturating_sub(1))
        .and_then(|l| l.chars().nth(e.column().saturating_sub(1)));
    let msg = e.to_string();
    let context = if msg.starts_with("key must be a string") {
        "looking for beginning of object key string"
    } else if msg.starts_with("expected `:`") {
        "after object key"
    } else if msg.starts_with("expected `,` or `}`") {
        "after object key:value pair"
    } else if msg.starts_with("expected `,` or `]`") {
        "after array element"
    } else if msg.starts_with("trailing characters") {
        "after top-level value"
    } else if msg.starts_with("expected value") || msg.starts_with("expected ident") {
        "looking for beginning of value"
    } else {
        return format!("invalid JSON: {msg}");
    };
    match found {
        Some('\'') => format!("invalid character '\\'' {context}"),
        Some(c) => format!("invalid character '{c}' {context}"),
        None => format!("invalid JSON: {msg}"),
    }
}

/// One known field: the canonical name and accepted aliases.
pub(crate) type FieldSpec = (&'static str, &'static [&'static str]);

/// The fields of one JSON object, matched case-insensitively against a known list.
#[derive(Debug)]
pub(crate) struct Fields<'a> {
    strct: &'static str,
    found: Vec<(&'static str, &'a Value)>,
}

impl<'a> Fields<'a> {
    /// Matches `v`'s keys against `known`; unknown keys are an error. Nulls count as absent.
    pub(crate) fn new(
        v: &'a Value,
        strct: &'static str,
        known: &[FieldSpec],
    ) -> Result<Self, DecodeError> {
        let Value::Object(map) = v else {
            return Err(DecodeError(format!(
                "json: cannot unmarshal {} into Go value of type structs.{strct}",
                json_kind(v)
            )));
        };
        let mut found: Vec<(&'static str, &'a Value)> = Vec::new();
        for (key, value) in map {
            let canon = known.iter().find_map(|(canon, aliases)| {
                (canon.eq_ignore_ascii_case(key)
                    || aliases.iter().any(|a| a.eq_ignore_ascii_case(key)))
                .then_some(*canon)
            });
            let Some(canon) = canon else {
                return Err(DecodeError(format!("json: unknown field \"{key}\"")));
            };
            if value.is_null() || found.iter().any(|(c, _)| *c == canon) {
                continue;
            }
            found.push((canon, value));
        }
        Ok(Fields { strct, found })
    }

    /// True when no non-null field was given.
    pub(crate) fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    /// The raw value of a field.
    pub(crate) fn raw(&self, name: &str) -> Option<&'a Value> {
        self.found.iter().find(|(c, _)| *c == name).map(|(_, v)| *v)
    }

    fn type_err(&self, name: &str, v: &Value, want: &str) -> DecodeError {
        DecodeError(format!(
            "json: cannot unmarshal {} into Go struct field {}.{name} of type {want}",
            json_kind(v),
            self.strct
        ))
    }

    /// A string field ("" when absent).
    pub(crate) fn string(&self, name: &str) -> Result<String, DecodeError> {
        match self.raw(name) {
            None => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(v) => Err(self.type_err(name, v, "string")),
        }
    }

    /// A boolean field (false when absent).
    pub(crate) fn boolean(&self, name: &str) -> Result<bool, DecodeError> {
        match self.raw(name) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(v) => Err(self.type_err(name, v, "bool")),
        }
    }

    /// An integer field (0 when absent).
    pub(crate) fn int(&self, name: &str) -> Result<i64, DecodeError> {
        match self.raw(name) {
            None => Ok(0),
            Some(Value::Number(n)) => n.as_i64().ok_or_else(|| {
                DecodeError(format!(
                    "json: cannot unmarshal number {n} into Go struct field {}.{name} of type int",
                    self.strct
                ))
            }),
            Some(v) => Err(self.type_err(name, v, "int")),
        }
    }

    /// A duration field: Go duration string or integer nanoseconds (0 when absent).
    pub(crate) fn duration(&self, name: &str) -> Result<i64, DecodeError> {
        match self.raw(name) {
            None => Ok(0),
            Some(Value::String(s)) if s.is_empty() => Ok(0),
            Some(Value::String(s)) => parse_go_duration(s).map_err(DecodeError),
            Some(Value::Number(n)) => n
                .as_i64()
                .or_else(|| n.as_f64().map(|f| f as i64))
                .ok_or_else(|| DecodeError(format!("time: invalid duration \"{n}\""))),
            Some(v) => Err(self.type_err(name, v, "time.Duration")),
        }
    }

    /// A list of strings (empty when absent).
    pub(crate) fn strings(&self, name: &str) -> Result<Vec<String>, DecodeError> {
        match self.raw(name) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| match item {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(self.type_err(name, other, "string")),
                })
                .collect(),
            Some(v) => Err(self.type_err(name, v, "[]string")),
        }
    }

    /// A map of strings (empty when absent).
    pub(crate) fn string_map(&self, name: &str) -> Result<BTreeMap<String, String>, DecodeError> {
        match self.raw(name) {
            None => Ok(BTreeMap::new()),
            Some(Value::Object(map)) => map
                .iter()
                .map(|(k, item)| match item {
                    Value::String(s) => Ok((k.clone(), s.clone())),
                    Value::Null => Ok((k.clone(), String::new())),
                    other => Err(self.type_err(name, other, "string")),
                })
                .collect(),
            Some(v) => Err(self.type_err(name, v, "map[string]string")),
        }
    }

    /// A map of string lists (HTTP check headers).
    pub(crate) fn string_list_map(
        &self,
        name: &str,
    ) -> Result<BTreeMap<String, Vec<String>>, DecodeError> {
        match self.raw(name) {
            None => Ok(BTreeMap::new()),
            Some(Value::Object(map)) => {
                let mut out = BTreeMap::new();
                for (k, item) in map {
                    let list = match item {
                        Value::Null => Vec::new(),
                        Value::Array(items) => items
                            .iter()
                            .map(|i| match i {
                                Value::String(s) => Ok(s.clone()),
                                other => Err(self.type_err(name, other, "string")),
                            })
                            .collect::<Result<_, _>>()?,
                        other => return Err(self.type_err(name, other, "[]string")),
                    };
                    out.insert(k.clone(), list);
                }
                Ok(out)
            }
            Some(v) => Err(self.type_err(name, v, "map[string][]string")),
        }
    }

    /// An object field, or an error if it is some other JSON type.
    pub(crate) fn object(
        &self,
        name: &str,
        go_type: &str,
    ) -> Result<Option<&'a Value>, DecodeError> {
        match self.raw(name) {
            None => Ok(None),
            Some(v @ Value::Object(_)) => Ok(Some(v)),
            Some(v) => Err(self.type_err(name, v, go_type)),
        }
    }

    /// An array field, or an error if it is some other JSON type.
    pub(crate) fn array(&self, name: &str, go_type: &str) -> Result<&'a [Value], DecodeError> {
        match self.raw(name) {
            None => Ok(&[]),
            Some(Value::Array(items)) => Ok(items),
            Some(v) => Err(self.type_err(name, v, go_type)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_errors_read_like_go() {
        let err = |b: &str| parse_body(b.as_bytes()).expect_err("invalid").0;
        assert_eq!(
            err("x"),
            "invalid character 'x' looking for beginning of value"
        );
        assert_eq!(err("{\"a\" 1}"), "invalid character '1' after object key");
        assert_eq!(
            err("{1:2}"),
            "invalid character '1' looking for beginning of object key string"
        );
        assert_eq!(err("[1 2]"), "invalid character '2' after array element");
        assert_eq!(err("{}x"), "invalid character 'x' after top-level value");
        assert_eq!(err("{"), "unexpected EOF");
        assert_eq!(err("  "), "EOF");
    }
}
