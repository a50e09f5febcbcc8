//! The expression tree of a filter and how it evaluates against a result's JSON. Uses
//! nothing else of the crate.

use regex::Regex;
use serde_json::Value;

/// `Or` and `And` hold flat lists of two or more terms, so chains never nest.
#[derive(Debug, Clone)]
pub(super) enum Expr {
    Or(Vec<Expr>),
    And(Vec<Expr>),
    Not(Box<Expr>),
    Match(Match),
}

#[derive(Debug, Clone)]
pub(super) enum Match {
    Eq(Vec<String>, String),
    Ne(Vec<String>, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Empty(Vec<String>),
    NotEmpty(Vec<String>),
    Matches(Vec<String>, Box<Regex>),
    NotMatches(Vec<String>, Box<Regex>),
}

/// The values a selector reaches; a list on the way fans out (any-element semantics).
fn resolve<'a>(v: &'a Value, path: &[String]) -> Vec<&'a Value> {
    let Some((head, rest)) = path.split_first() else {
        return vec![v];
    };
    match v {
        Value::Object(map) => {
            let next = map.get(head.as_str()).or_else(|| {
                map.iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(head))
                    .map(|(_, v)| v)
            });
            next.map(|n| resolve(n, rest)).unwrap_or_default()
        }
        Value::Array(items) => items.iter().flat_map(|i| resolve(i, path)).collect(),
        _ => Vec::new(),
    }
}

fn scalar_eq(v: &Value, want: &str) -> bool {
    match v {
        Value::String(s) => s == want,
        Value::Number(n) => want
            .parse::<f64>()
            .ok()
            .zip(n.as_f64())
            .is_some_and(|(a, b)| a == b),
        Value::Bool(b) => want.parse::<bool>().ok() == Some(*b),
        Value::Null => want.is_empty(),
        _ => false,
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

fn contains(v: &Value, want: &str) -> bool {
    match v {
        Value::Array(items) => items.iter().any(|i| scalar_eq(i, want)),
        Value::Object(map) => map.contains_key(want),
        Value::String(s) => s.contains(want),
        _ => false,
    }
}

impl Match {
    pub(super) fn eval(&self, v: &Value) -> bool {
        match self {
            Match::Eq(sel, want) => eq(v, sel, want),
            Match::Ne(sel, want) => !eq(v, sel, want),
            Match::In(want, sel) => resolve(v, sel).iter().any(|x| contains(x, want)),
            Match::NotIn(want, sel) => !resolve(v, sel).iter().any(|x| contains(x, want)),
            Match::Empty(sel) => resolve(v, sel).iter().all(|x| is_empty(x)),
            Match::NotEmpty(sel) => !resolve(v, sel).iter().all(|x| is_empty(x)),
            Match::Matches(sel, re) => resolve(v, sel)
                .iter()
                .any(|x| x.as_str().is_some_and(|s| re.is_match(s))),
            Match::NotMatches(sel, re) => !resolve(v, sel)
                .iter()
                .any(|x| x.as_str().is_some_and(|s| re.is_match(s))),
        }
    }
}

fn eq(v: &Value, sel: &[String], want: &str) -> bool {
    let found = resolve(v, sel);
    if found.is_empty() {
        // An omitted field is Go's zero value.
        return want.is_empty() || want == "0" || want == "false";
    }
    found.iter().any(|x| scalar_eq(x, want))
}

impl Expr {
    pub(super) fn eval(&self, v: &Value) -> bool {
        match self {
            Expr::Or(terms) => terms.iter().any(|e| e.eval(v)),
            Expr::And(terms) => terms.iter().all(|e| e.eval(v)),
            Expr::Not(e) => !e.eval(v),
            Expr::Match(m) => m.eval(v),
        }
    }
}
