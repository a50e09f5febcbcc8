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
//! Nesting (parentheses and `not`) is bounded at [`MAX_DEPTH`] levels, the one thing the
//! parser and the evaluator recurse on: `and`/`or` chains are flat lists, so a long chain
//! costs no stack. A deeper expression is refused with a 400 rather than overflowing the
//! stack, which would abort the whole process (go-bexpr has no bound; listed deviation).
//!
//! Uses `query` and `error` only.

use regex::Regex;
use serde::Serialize;
use serde_json::Value;

use crate::error::HttpError;
use crate::query::Query;

/// A parsed filter expression.
#[derive(Debug, Clone)]
pub(crate) struct Filter {
    root: Expr,
}

/// How deep parentheses and `not` may nest.
pub(crate) const MAX_DEPTH: usize = 256;

/// Why an expression was refused.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum FilterError {
    /// Not an expression: the text after Consul's prefix (go-bexpr's wording, roughly).
    Syntax(String),
    /// Nested deeper than [`MAX_DEPTH`].
    TooDeep,
}

impl std::fmt::Display for FilterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FilterError::Syntax(e) => f.write_str(e),
            FilterError::TooDeep => write!(
                f,
                "filter expression nested too deeply: more than {MAX_DEPTH} levels of \
                 parentheses and \"not\""
            ),
        }
    }
}

/// `Or` and `And` hold flat lists of two or more terms, so chains never nest.
#[derive(Debug, Clone)]
enum Expr {
    Or(Vec<Expr>),
    And(Vec<Expr>),
    Not(Box<Expr>),
    Match(Match),
}

#[derive(Debug, Clone)]
enum Match {
    Eq(Vec<String>, String),
    Ne(Vec<String>, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Empty(Vec<String>),
    NotEmpty(Vec<String>),
    Matches(Vec<String>, Box<Regex>),
    NotMatches(Vec<String>, Box<Regex>),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    LParen,
    RParen,
    Eq,
    Ne,
    /// A bare word: keyword, selector segment or unquoted value.
    Word(String),
    /// A quoted or raw string.
    Str(String),
    Dot,
    LBracket,
    RBracket,
}

fn lex(s: &str) -> Result<Vec<(usize, Tok)>, String> {
    let mut out = Vec::new();
    let chars: Vec<(usize, char)> = s.char_indices().collect();
    let mut i = 0;
    while i < chars.len() {
        let (pos, c) = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                out.push((pos, Tok::LParen));
                i += 1;
            }
            ')' => {
                out.push((pos, Tok::RParen));
                i += 1;
            }
            '[' => {
                out.push((pos, Tok::LBracket));
                i += 1;
            }
            ']' => {
                out.push((pos, Tok::RBracket));
                i += 1;
            }
            '.' => {
                out.push((pos, Tok::Dot));
                i += 1;
            }
            '=' | '!' => {
                if chars.get(i + 1).map(|x| x.1) == Some('=') {
                    out.push((pos, if c == '=' { Tok::Eq } else { Tok::Ne }));
                    i += 2;
                } else {
                    return Err(format!(
                        "1:{} ({pos}): no match found, expected: \"==\" or \"!=\"",
                        pos + 1
                    ));
                }
            }
            '"' => {
                let mut v = String::new();
                i += 1;
                loop {
                    let Some(&(_, ch)) = chars.get(i) else {
                        return Err(format!("1:{} ({pos}): unterminated string", pos + 1));
                    };
                    i += 1;
                    match ch {
                        '"' => break,
                        '\\' => {
                            let Some(&(_, esc)) = chars.get(i) else {
                                return Err(format!("1:{} ({pos}): unterminated string", pos + 1));
                            };
                            i += 1;
                            v.push(match esc {
                                'n' => '\n',
                                't' => '\t',
                                'r' => '\r',
                                other => other,
                            });
                        }
                        other => v.push(other),
                    }
                }
                out.push((pos, Tok::Str(v)));
            }
            '`' => {
                let mut v = String::new();
                i += 1;
                loop {
                    let Some(&(_, ch)) = chars.get(i) else {
                        return Err(format!("1:{} ({pos}): unterminated raw string", pos + 1));
                    };
                    i += 1;
                    if ch == '`' {
                        break;
                    }
                    v.push(ch);
                }
                out.push((pos, Tok::Str(v)));
            }
            c if c.is_alphanumeric() || c == '_' || c == '-' || c == '/' || c == ':' => {
                let mut v = String::new();
                while let Some(&(_, ch)) = chars.get(i) {
                    if ch.is_alphanumeric() || matches!(ch, '_' | '-' | '/' | ':') {
                        v.push(ch);
                        i += 1;
                    } else {
                        break;
                    }
                }
                out.push((pos, Tok::Word(v)));
            }
            other => {
                return Err(format!(
                    "1:{} ({pos}): no match found, unexpected character {other:?}",
                    pos + 1
                ));
            }
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    len: usize,
    /// Open parentheses and `not`s around the current position.
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.1)
    }

    fn peek_word(&self, w: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(x)) if x == w)
    }

    fn peek_word_at(&self, off: usize, w: &str) -> bool {
        matches!(self.toks.get(self.pos + off).map(|t| &t.1), Some(Tok::Word(x)) if x == w)
    }

    fn err(&self, what: &str) -> String {
        let at = self.toks.get(self.pos).map_or(self.len, |t| t.0);
        format!("1:{} ({at}): no match found, expected: {what}", at + 1)
    }

    fn or(&mut self) -> Result<Expr, FilterError> {
        let first = self.and()?;
        if !self.peek_word("or") {
            return Ok(first);
        }
        let mut terms = vec![first];
        while self.peek_word("or") {
            self.pos += 1;
            terms.push(self.and()?);
        }
        Ok(Expr::Or(terms))
    }

    fn and(&mut self) -> Result<Expr, FilterError> {
        let first = self.not()?;
        if !self.peek_word("and") {
            return Ok(first);
        }
        let mut terms = vec![first];
        while self.peek_word("and") {
            self.pos += 1;
            terms.push(self.not()?);
        }
        Ok(Expr::And(terms))
    }

    /// A `not`, a parenthesised expression or a match: the only recursion, so the only
    /// place the depth is counted.
    fn not(&mut self) -> Result<Expr, FilterError> {
        let nests = self.peek_word("not") || self.peek() == Some(&Tok::LParen);
        if !nests {
            return self.matcher().map(Expr::Match).map_err(FilterError::Syntax);
        }
        if self.depth == MAX_DEPTH {
            return Err(FilterError::TooDeep);
        }
        self.depth += 1;
        let e = if self.peek_word("not") {
            self.pos += 1;
            self.not().map(|e| Expr::Not(Box::new(e)))
        } else {
            self.pos += 1;
            self.or().and_then(|e| {
                if self.peek() == Some(&Tok::RParen) {
                    self.pos += 1;
                    Ok(e)
                } else {
                    Err(FilterError::Syntax(self.err("\")\"")))
                }
            })
        };
        self.depth -= 1;
        e
    }

    fn value(&mut self) -> Result<String, String> {
        match self.peek().cloned() {
            Some(Tok::Str(s) | Tok::Word(s)) => {
                self.pos += 1;
                Ok(s)
            }
            _ => Err(self.err("a value")),
        }
    }

    fn selector(&mut self) -> Result<Vec<String>, String> {
        let mut path = Vec::new();
        match self.peek().cloned() {
            Some(Tok::Word(w)) if !is_keyword(&w) => {
                self.pos += 1;
                path.push(w);
            }
            _ => return Err(self.err("a selector")),
        }
        loop {
            match self.peek() {
                Some(Tok::Dot) => {
                    self.pos += 1;
                    match self.peek().cloned() {
                        Some(Tok::Word(w)) => {
                            self.pos += 1;
                            path.push(w);
                        }
                        _ => return Err(self.err("a selector segment")),
                    }
                }
                Some(Tok::LBracket) => {
                    self.pos += 1;
                    let key = self.value()?;
                    if self.peek() != Some(&Tok::RBracket) {
                        return Err(self.err("\"]\""));
                    }
                    self.pos += 1;
                    path.push(key);
                }
                _ => return Ok(path),
            }
        }
    }

    fn regex(&mut self) -> Result<Box<Regex>, String> {
        let v = self.value()?;
        Regex::new(&v)
            .map(Box::new)
            .map_err(|e| format!("Invalid regular expression {v:?}: {e}"))
    }

    fn matcher(&mut self) -> Result<Match, String> {
        // `<Value> in <Selector>` / `<Value> not in <Selector>` start with a value.
        let value_first = matches!(self.peek(), Some(Tok::Str(_)))
            || self.peek_word_at(1, "in")
            || (self.peek_word_at(1, "not") && self.peek_word_at(2, "in"));
        if value_first {
            let v = self.value()?;
            let negated = if self.peek_word("not") {
                self.pos += 1;
                true
            } else {
                false
            };
            if !self.peek_word("in") {
                return Err(self.err("\"in\""));
            }
            self.pos += 1;
            let sel = self.selector()?;
            return Ok(if negated {
                Match::NotIn(v, sel)
            } else {
                Match::In(v, sel)
            });
        }
        let sel = self.selector()?;
        match self.peek().cloned() {
            Some(Tok::Eq) => {
                self.pos += 1;
                Ok(Match::Eq(sel, self.value()?))
            }
            Some(Tok::Ne) => {
                self.pos += 1;
                Ok(Match::Ne(sel, self.value()?))
            }
            Some(Tok::Word(w)) if w == "is" => {
                self.pos += 1;
                if self.peek_word("not") {
                    self.pos += 1;
                    if !self.peek_word("empty") {
                        return Err(self.err("\"empty\""));
                    }
                    self.pos += 1;
                    return Ok(Match::NotEmpty(sel));
                }
                if !self.peek_word("empty") {
                    return Err(self.err("\"empty\" or \"not empty\""));
                }
                self.pos += 1;
                Ok(Match::Empty(sel))
            }
            Some(Tok::Word(w)) if w == "contains" => {
                self.pos += 1;
                Ok(Match::In(self.value()?, sel))
            }
            Some(Tok::Word(w)) if w == "matches" => {
                self.pos += 1;
                Ok(Match::Matches(sel, self.regex()?))
            }
            Some(Tok::Word(w)) if w == "not" => {
                self.pos += 1;
                if self.peek_word("contains") {
                    self.pos += 1;
                    Ok(Match::NotIn(self.value()?, sel))
                } else if self.peek_word("matches") {
                    self.pos += 1;
                    Ok(Match::NotMatches(sel, self.regex()?))
                } else {
                    Err(self.err("\"contains\" or \"matches\""))
                }
            }
            _ => Err(self
                .err("\"!=\", \".\", \"==\", \"[\", \"contains\", \"is\", \"matches\", \"not\"")),
        }
    }
}

fn is_keyword(w: &str) -> bool {
    matches!(
        w,
        "and" | "or" | "not" | "in" | "is" | "empty" | "contains" | "matches"
    )
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
    fn eval(&self, v: &Value) -> bool {
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
    fn eval(&self, v: &Value) -> bool {
        match self {
            Expr::Or(terms) => terms.iter().any(|e| e.eval(v)),
            Expr::And(terms) => terms.iter().all(|e| e.eval(v)),
            Expr::Not(e) => !e.eval(v),
            Expr::Match(m) => m.eval(v),
        }
    }
}

impl Filter {
    /// Parses an expression; the error's text is the part after Consul's prefix.
    pub(crate) fn parse(expr: &str) -> Result<Filter, FilterError> {
        let toks = lex(expr).map_err(FilterError::Syntax)?;
        let mut p = Parser {
            toks,
            pos: 0,
            len: expr.len(),
            depth: 0,
        };
        let root = p.or()?;
        if p.pos != p.toks.len() {
            return Err(FilterError::Syntax(
                p.err("\"and\", \"or\" or end of input"),
            ));
        }
        Ok(Filter { root })
    }

    /// Parses `?filter=` if present: 500 on a malformed expression, like Consul; 400 on one
    /// nested deeper than [`MAX_DEPTH`], which Consul has no answer for.
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
