//! User values as Bosun's messages show them: cut, so that a value of any size (a 200 KB
//! `spec.version`) never fills a log line, a status, an Event, a pull request comment or a commit
//! message. What is cut ends in `…`.

use std::fmt;

/// The most characters of one value a message shows.
pub const MAX: usize = 80;

/// At most `max` characters of `s`, ending in `…` when cut (the `…` counted).
pub fn cut_to(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// `s` cut to [`MAX`] characters.
pub fn cut(s: &str) -> String {
    cut_to(s, MAX)
}

/// A value as messages quote it: cut to [`MAX`] characters, then quoted and escaped as Rust's `{:?}`
/// does (a CR shows as `\r`). `format!("{}", Quoted(v))`, or `%Quoted(v)` in a tracing field.
#[derive(Clone, Copy)]
pub struct Quoted<'a>(pub &'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", cut(self.0))
    }
}

/// A value as messages show it unquoted: cut to [`MAX`] characters. `%Cut(v)` in a tracing field.
#[derive(Clone, Copy)]
pub struct Cut<'a>(pub &'a str);

impl fmt::Display for Cut<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&cut(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_value_is_cut_to_80_characters_with_an_ellipsis() {
        let long = "é".repeat(200_000);
        let shown = cut(&long);
        assert_eq!(shown.chars().count(), MAX);
        assert!(shown.ends_with('…'));
        assert_eq!(cut("v1.2.3"), "v1.2.3");
        assert_eq!(
            cut(&"x".repeat(MAX)),
            "x".repeat(MAX),
            "exactly 80: kept whole"
        );
    }

    #[test]
    fn quoted_values_are_cut_then_escaped() {
        assert_eq!(Quoted("a\r\nb").to_string(), r#""a\r\nb""#);
        let shown = Quoted(&"x".repeat(1000)).to_string();
        assert_eq!(shown, format!("\"{}…\"", "x".repeat(MAX - 1)));
        assert_eq!(Cut(&"y".repeat(100)).to_string().chars().count(), MAX);
    }
}
