//! From text to the expression tree: the lexer, the parser with its depth bound, and why
//! an expression is refused. Uses `ast`.

use regex::Regex;

use super::ast::{Expr, Match};

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

/// Parses a whole expression; the error's text is the part after Consul's prefix.
pub(super) fn expression(expr: &str) -> Result<Expr, FilterError> {
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
    Ok(root)
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
