//! The conditions of a metric (`successCondition`, `failureCondition`): a small language over the
//! result of a PromQL query, parsed once (and by `bosun validate`), evaluated on each measurement.
//!
//! ```text
//! condition  := or
//! or         := and ( "||" and )*
//! and        := not ( "&&" not )*
//! not        := "!" not | "(" condition ")" | comparison
//! comparison := value ( "<" | "<=" | ">" | ">=" | "==" | "!=" ) value
//! value      := "result" | "result[" index "]" | "len(result)" | number
//! ```
//!
//! `result` is the query's only value (a scalar, or an instant vector of exactly one series);
//! `result[i]` is the i-th series of a vector, in the order of their label sets; `len(result)` counts
//! them. Numbers are decimal (`0.01`, `95`, `1e-3`). A value that does not exist (an index past the
//! end, `result` of an empty or many-series vector) or is not a number (`NaN`, as `0/0` gives when a
//! canary had no traffic) makes the condition *undecided*: the measurement is inconclusive, never a
//! pass.

use std::fmt;

/// A parsed condition.
#[derive(Clone, Debug, PartialEq)]
pub enum Condition {
    Or(Box<Condition>, Box<Condition>),
    And(Box<Condition>, Box<Condition>),
    Not(Box<Condition>),
    Compare(Value, Op, Value),
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value {
    /// `result`: the only value.
    Result,
    /// `result[i]`.
    Index(usize),
    /// `len(result)`.
    Len,
    Number(f64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Eq => "==",
            Op::Ne => "!=",
        })
    }
}

/// Why a condition could not be read: where (a character offset) and what was expected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub at: usize,
    pub reason: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "at character {}: {}; write e.g. `result < 0.01`, `result[0] >= 0.95 && len(result) == 1`",
            self.at + 1,
            self.reason
        )
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Result,
    Len,
    Number(f64),
    Op(Op),
    And,
    Or,
    Not,
    Open,
    Close,
    OpenBracket,
    CloseBracket,
}

fn tokens(text: &str) -> Result<Vec<(usize, Token)>, ParseError> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let err = |at: usize, reason: String| ParseError { at, reason };
    while i < chars.len() {
        let (at, c) = chars[i];
        let next = chars.get(i + 1).map(|(_, c)| *c);
        let two = |t: Token| (at, t);
        match c {
            ' ' | '\t' => i += 1,
            '(' => {
                out.push(two(Token::Open));
                i += 1;
            }
            ')' => {
                out.push(two(Token::Close));
                i += 1;
            }
            '[' => {
                out.push(two(Token::OpenBracket));
                i += 1;
            }
            ']' => {
                out.push(two(Token::CloseBracket));
                i += 1;
            }
            '&' if next == Some('&') => {
                out.push(two(Token::And));
                i += 2;
            }
            '|' if next == Some('|') => {
                out.push(two(Token::Or));
                i += 2;
            }
            '<' | '>' | '=' | '!' => {
                let (op, len) = match (c, next) {
                    ('<', Some('=')) => (Some(Op::Le), 2),
                    ('<', _) => (Some(Op::Lt), 1),
                    ('>', Some('=')) => (Some(Op::Ge), 2),
                    ('>', _) => (Some(Op::Gt), 1),
                    ('=', Some('=')) => (Some(Op::Eq), 2),
                    ('!', Some('=')) => (Some(Op::Ne), 2),
                    ('!', _) => (None, 1),
                    _ => return Err(err(at, "a single `=`: compare with `==`".into())),
                };
                out.push(two(op.map_or(Token::Not, Token::Op)));
                i += len;
            }
            c if c.is_ascii_digit() || c == '.' || c == '-' => {
                let start = i;
                i += 1;
                while i < chars.len() {
                    let (_, d) = chars[i];
                    let exponent_sign =
                        (d == '-' || d == '+') && matches!(chars[i - 1].1, 'e' | 'E');
                    if d.is_ascii_digit() || d == '.' || d == 'e' || d == 'E' || exponent_sign {
                        i += 1;
                    } else {
                        break;
                    }
                }
                let end = chars.get(i).map_or(text.len(), |(a, _)| *a);
                let word = &text[at..end];
                let n: f64 = word
                    .parse()
                    .map_err(|_| err(chars[start].0, format!("{word:?} is not a number")))?;
                out.push((at, Token::Number(n)));
            }
            c if c.is_ascii_alphabetic() => {
                let start = i;
                while i < chars.len() && (chars[i].1.is_ascii_alphanumeric() || chars[i].1 == '_') {
                    i += 1;
                }
                let end = chars.get(i).map_or(text.len(), |(a, _)| *a);
                match &text[chars[start].0..end] {
                    "result" => out.push((at, Token::Result)),
                    "len" => out.push((at, Token::Len)),
                    "and" | "or" | "not" => {
                        return Err(err(at, "write `&&`, `||` and `!`".into()));
                    }
                    word => {
                        return Err(err(
                            at,
                            format!(
                                "unknown word {word:?}: only `result` and `len(result)` name values"
                            ),
                        ));
                    }
                }
            }
            c => return Err(err(at, format!("unexpected {c:?}"))),
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<(usize, Token)>,
    pos: usize,
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos).map(|(_, t)| t)
    }

    fn at(&self) -> usize {
        self.tokens.get(self.pos).map_or(self.end, |(a, _)| *a)
    }

    fn error<T>(&self, reason: impl Into<String>) -> Result<T, ParseError> {
        Err(ParseError {
            at: self.at(),
            reason: reason.into(),
        })
    }

    fn expect(&mut self, t: &Token, what: &str) -> Result<(), ParseError> {
        if self.peek() == Some(t) {
            self.pos += 1;
            Ok(())
        } else {
            self.error(format!("expected {what}"))
        }
    }

    fn or(&mut self) -> Result<Condition, ParseError> {
        let mut left = self.and()?;
        while self.peek() == Some(&Token::Or) {
            self.pos += 1;
            left = Condition::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Condition, ParseError> {
        let mut left = self.not()?;
        while self.peek() == Some(&Token::And) {
            self.pos += 1;
            left = Condition::And(Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Condition, ParseError> {
        match self.peek() {
            Some(Token::Not) => {
                self.pos += 1;
                Ok(Condition::Not(Box::new(self.not()?)))
            }
            Some(Token::Open) => {
                self.pos += 1;
                let inner = self.or()?;
                self.expect(&Token::Close, "`)`")?;
                Ok(inner)
            }
            _ => self.comparison(),
        }
    }

    fn comparison(&mut self) -> Result<Condition, ParseError> {
        let left = self.value()?;
        let op = match self.peek() {
            Some(Token::Op(op)) => *op,
            _ => return self.error("expected a comparison (<, <=, >, >=, ==, !=)"),
        };
        self.pos += 1;
        let right = self.value()?;
        Ok(Condition::Compare(left, op, right))
    }

    fn value(&mut self) -> Result<Value, ParseError> {
        match self.peek().cloned() {
            Some(Token::Number(n)) => {
                self.pos += 1;
                Ok(Value::Number(n))
            }
            Some(Token::Result) => {
                self.pos += 1;
                if self.peek() != Some(&Token::OpenBracket) {
                    return Ok(Value::Result);
                }
                self.pos += 1;
                let index = match self.peek() {
                    Some(Token::Number(n)) if n.fract() == 0.0 && *n >= 0.0 && *n < 1e6 => {
                        *n as usize
                    }
                    _ => return self.error("expected an index: result[0]"),
                };
                self.pos += 1;
                self.expect(&Token::CloseBracket, "`]`")?;
                Ok(Value::Index(index))
            }
            Some(Token::Len) => {
                self.pos += 1;
                self.expect(&Token::Open, "`(` after len")?;
                self.expect(&Token::Result, "`result` in len(result)")?;
                self.expect(&Token::Close, "`)`")?;
                Ok(Value::Len)
            }
            _ => self.error("expected a value: result, result[i], len(result) or a number"),
        }
    }
}

impl Condition {
    /// Parses a condition.
    ///
    /// # Errors
    /// Where the text stops making sense, and why.
    pub fn parse(text: &str) -> Result<Condition, ParseError> {
        let tokens = tokens(text)?;
        if tokens.is_empty() {
            return Err(ParseError {
                at: 0,
                reason: "the condition is empty".into(),
            });
        }
        let mut p = Parser {
            tokens,
            pos: 0,
            end: text.len(),
        };
        let c = p.or()?;
        if p.pos < p.tokens.len() {
            return p.error("unexpected text after the condition");
        }
        Ok(c)
    }

    /// The condition on `result` (the query's values, series in label order): `Some(true|false)`,
    /// or `None` when a value it needs does not exist or is not a number (inconclusive).
    pub fn eval(&self, result: &[f64]) -> Option<bool> {
        match self {
            Condition::Or(a, b) => match (a.eval(result), b.eval(result)) {
                (Some(true), _) | (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            },
            Condition::And(a, b) => match (a.eval(result), b.eval(result)) {
                (Some(false), _) | (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            },
            Condition::Not(a) => a.eval(result).map(|v| !v),
            Condition::Compare(l, op, r) => {
                let (l, r) = (value(*l, result)?, value(*r, result)?);
                Some(match op {
                    Op::Lt => l < r,
                    Op::Le => l <= r,
                    Op::Gt => l > r,
                    Op::Ge => l >= r,
                    Op::Eq => l == r,
                    Op::Ne => l != r,
                })
            }
        }
    }
}

fn value(v: Value, result: &[f64]) -> Option<f64> {
    let n = match v {
        Value::Result if result.len() == 1 => result[0],
        Value::Result => return None,
        Value::Index(i) => *result.get(i)?,
        Value::Len => result.len() as f64,
        Value::Number(n) => n,
    };
    (!n.is_nan()).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_read_as_written_and_decide_on_the_result() {
        // (condition, result, verdict)
        let cases: &[(&str, &[f64], Option<bool>)] = &[
            ("result < 0.01", &[0.002], Some(true)),
            ("result < 0.01", &[0.083], Some(false)),
            ("result[0] >= 0.95", &[0.97, 0.1], Some(true)),
            ("result[1] >= 0.95", &[0.97, 0.1], Some(false)),
            ("result[2] >= 0.95", &[0.97, 0.1], None),
            ("result < 0.01", &[], None),
            ("result < 0.01", &[0.0, 0.0], None),
            ("result < 0.01", &[f64::NAN], None),
            ("len(result) == 2", &[1.0, 2.0], Some(true)),
            ("result > 1 && result < 3", &[2.0], Some(true)),
            ("result > 1 && result < 3", &[4.0], Some(false)),
            ("result < 1 || result > 3", &[4.0], Some(true)),
            ("!(result == 0)", &[1.0], Some(true)),
            ("result != 0 && len(result) == 1", &[1.0], Some(true)),
            ("result <= 1e-3", &[0.0005], Some(true)),
            ("result >= -1", &[-0.5], Some(true)),
            // An undecided side does not make a decided `&&` false... or true.
            ("result[5] > 0 && result[0] > 10", &[1.0], Some(false)),
            ("result[5] > 0 || result[0] > 0", &[1.0], Some(true)),
            ("result[5] > 0 && result[0] > 0", &[1.0], None),
        ];
        for (text, result, want) in cases {
            let c = Condition::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(c.eval(result), *want, "{text} on {result:?}");
        }
    }

    #[test]
    fn a_bad_condition_says_where_and_what_to_write() {
        let cases = [
            ("", "empty"),
            ("result", "expected a comparison"),
            ("result = 1", "compare with `==`"),
            ("result < ", "expected a value"),
            ("result < 0.01 and result > 0", "write `&&`"),
            ("rate < 1", "unknown word \"rate\""),
            ("result[x] > 1", "unknown word \"x\""),
            ("result[0.5] > 1", "expected an index"),
            ("(result > 1", "expected `)`"),
            ("result > 1)", "unexpected text"),
            ("result > 1.2.3", "is not a number"),
            ("result > 1 #", "unexpected '#'"),
        ];
        for (text, words) in cases {
            let e = Condition::parse(text).expect_err(text).to_string();
            assert!(e.contains(words), "{text}: {e}");
            assert!(e.contains("write e.g."), "{text}: {e}");
        }
    }
}
