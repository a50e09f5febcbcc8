//! Consul's filter expressions (go-bexpr), evaluated against the JSON of each result.
//!
//! Grammar: `or` of `and` of (`not`) matches, parentheses; matches are
//! `Sel == V`, `Sel != V`, `V in Sel`, `V not in Sel`, `Sel contains V`,
//! `Sel not contains V`, `Sel is empty`, `Sel is not empty`, `Sel matches V`,
//! `Sel not matches V`. Values are double-quoted strings, backtick raw strings or bare
//! words. Selectors are dotted paths (`Service.Tags`, `Node.Meta.env`) or
//! `Meta["key"]`; a path through a list matches if any element does.
//!
//! Evaluating against the rendered JSON, rather than typed structs, means an unknown
//! selector simply matches nothing instead of failing up front as in Consul (a documented
//! deviation).
//!
//! Nesting (parentheses and `not`) is bounded at [`MAX_DEPTH`](parse::MAX_DEPTH) levels,
//! the one thing the parser and the evaluator recurse on: `and`/`or` chains are flat
//! lists, so a long chain costs no stack. A deeper expression is refused with a 400 rather than overflowing the
//! stack, which would abort the whole process (go-bexpr has no bound; listed deviation).
//!
//! `parse` turns text into the tree of `ast`, which evaluates itself; this module holds the
//! parsed [`Filter`] the handlers use. Uses `query` and `error`.

mod ast;
mod parse;

use serde::Serialize;
use serde_json::Value;

use self::ast::Expr;
use self::parse::FilterError;
use crate::error::HttpError;
use crate::query::Query;

/// A parsed filter expression.
#[derive(Debug, Clone)]
pub(crate) struct Filter {
    root: Expr,
}

impl Filter {
    /// Parses an expression; the error's text is the part after Consul's prefix.
    pub(crate) fn parse(expr: &str) -> Result<Filter, FilterError> {
        parse::expression(expr).map(|root| Filter { root })
    }

    /// Parses `?filter=` if present: 500 on a malformed expression, like Consul; 400 on one
    /// nested deeper than [`MAX_DEPTH`](parse::MAX_DEPTH), which Consul has no answer for.
    pub(crate) fn from_query(q: &Query) -> Result<Option<Filter>, HttpError> {
        match q.get("filter") {
            None => Ok(None),
            Some(e) if e.trim().is_empty() => Ok(None),
            Some(e) => Filter::parse(e).map(Some).map_err(|err| {
                let text = format!("Failed to create boolean expression evaluator: {err}");
                match err {
                    FilterError::Syntax(_) => HttpError::internal(text),
                    FilterError::TooDeep => HttpError::bad_request(text),
                }
            }),
        }
    }

    /// Whether `v` satisfies the expression.
    pub(crate) fn matches(&self, v: &Value) -> bool {
        self.root.eval(v)
    }
}

/// Whether a result passes the request's filter (everything does without one); it is
/// rendered to JSON only when there is a filter.
pub(crate) fn passes(filter: Option<&Filter>, item: &impl Serialize) -> bool {
    filter.is_none_or(|f| f.matches(&serde_json::to_value(item).unwrap_or(Value::Null)))
}

#[cfg(test)]
mod tests {
    use super::parse::MAX_DEPTH;
    use super::*;
    use serde_json::json;

    fn check(expr: &str, v: &Value) -> bool {
        Filter::parse(expr)
            .unwrap_or_else(|e| panic!("{expr:?} should parse: {e}"))
            .matches(v)
    }

    #[test]
    fn operators() {
        let v = json!({"Service": {"Service": "web", "Tags": ["a", "b"], "Meta": {"env": "prod"},
            "Port": 8080, "Address": ""},
            "Node": {"Node": "n1"}, "Checks": [{"Status": "passing"}, {"Status": "critical"}]});
        assert!(check("Service.Service == web", &v));
        assert!(check("Service.Service == \"web\"", &v));
        assert!(check("Service.Service == `web`", &v));
        assert!(check("Service.Service != db", &v));
        assert!(check("a in Service.Tags", &v));
        assert!(check("\"c\" not in Service.Tags", &v));
        assert!(check("Service.Tags contains b", &v));
        assert!(check("Service.Tags not contains z", &v));
        assert!(check("Service.Address is empty", &v));
        assert!(check("Service.Tags is not empty", &v));
        assert!(check("Service.Service matches \"^w.b$\"", &v));
        assert!(check("Service.Service not matches \"^db\"", &v));
        assert!(check("Service.Meta.env == prod and Node.Node == n1", &v));
        assert!(check("Service.Meta[\"env\"] == prod", &v));
        assert!(check("not (Service.Port == 1) or Node.Node == x", &v));
        assert!(check("Service.Port == 8080", &v));
        assert!(check("Checks.Status == critical", &v));
        assert!(!check("Service.Service == db or Node.Node == n2", &v));
    }

    #[test]
    fn malformed_expressions_fail() {
        for bad in [
            "Service.Service ==",
            "== web",
            "(a in Tags",
            "Tags is",
            "x ~ y",
            "\"open",
        ] {
            assert!(Filter::parse(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn nesting_is_bounded_and_chains_are_flat() {
        let v = json!({"a": "1"});
        let nested = |n: usize| format!("{}a == 1{}", "(".repeat(n), ")".repeat(n));
        assert!(
            check(&nested(MAX_DEPTH), &v),
            "{MAX_DEPTH} levels parse and match"
        );
        assert_eq!(
            Filter::parse(&nested(MAX_DEPTH + 1)).map(|_| ()),
            Err(FilterError::TooDeep)
        );
        let nots = format!("{}a == 1", "not ".repeat(MAX_DEPTH + 1));
        assert_eq!(Filter::parse(&nots).map(|_| ()), Err(FilterError::TooDeep));
        let opened = "(".repeat(100_000);
        assert_eq!(
            Filter::parse(&opened).map(|_| ()),
            Err(FilterError::TooDeep),
            "refused at the bound, long before the input ends"
        );
        // 50,000 terms: parsed, evaluated and dropped without deep recursion.
        let chain = vec!["a == 1"; 50_000].join(" and ");
        assert!(check(&chain, &v));
        let chain = vec!["a == 2"; 50_000].join(" or ");
        assert!(!check(&chain, &v));
    }
}
