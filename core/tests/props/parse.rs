//! The YAML boundary refuses or reads anything, in bounded time: arbitrary bytes, a soup of YAML's
//! own tokens, and valid definitions with random damage never make [`parse_documents`] (nor the
//! validation and the writer on top of it) panic or run long, and what it reads points inside the
//! text.

use std::time::{Duration, Instant};

use bosun_core::validate::validate_file;
use bosun_core::writeback::{Edit, set_version};
use bosun_core::yaml::{Document, Limits, Node, Value, parse_documents};
use proptest::prelude::*;
use proptest::sample::Index;

use crate::files::{self, NAME, NAMESPACE};
use crate::writer::{documents, with_version};

/// The longest any one case may take. A debug build reads, validates and edits these inputs of a
/// few KB in under 0.1 s; the budget is far above that, for a CI machine busy with a cluster,
/// and still catches a path that hangs or blows up.
const BUDGET: Duration = Duration::from_secs(5);

/// Limits small enough that generated input reaches each of them.
const TIGHT: Limits = Limits {
    max_bytes: 2048,
    max_depth: 6,
    max_nodes: 64,
    max_documents: 3,
};

/// Pieces YAML is made of, the odd ones included.
const TOKENS: &[&str] = &[
    "a",
    "b",
    "key",
    "1.5.0",
    "0x1F",
    "1e9",
    ".inf",
    "~",
    "null",
    "yes",
    ":",
    ": ",
    "-",
    "- ",
    "?",
    "? ",
    "[",
    "]",
    "{",
    "}",
    ",",
    ", ",
    "&a ",
    "&b ",
    "*a",
    "*b",
    "<<: *a",
    "<<",
    "!!str ",
    "!!int ",
    "!!map ",
    "!!seq ",
    "!!binary ",
    "!x ",
    "! ",
    "!",
    "|",
    "|-",
    "|+2",
    ">",
    ">-",
    "'",
    "''",
    "\"",
    "\\",
    "\\x4",
    "\\u00e9",
    "\\U0001F600",
    "#",
    " # c",
    "\n",
    "\r\n",
    "\r",
    " ",
    "  ",
    "    ",
    "\t",
    "---",
    "--- ",
    "...",
    "\n---\n",
    "\n...\n",
    "%YAML 1.2\n",
    "%TAG !e! tag:x,2000:\n",
    "!e!t ",
    "\u{feff}",
    "é",
    "日本",
    "\u{2028}",
    "\u{85}",
    "\0",
    "\u{7f}",
    "\u{fffe}",
];

/// Parses `text` under `limits`, checking the time it took and where its nodes point.
fn parse(text: &str, limits: &Limits) -> Result<(), TestCaseError> {
    let started = Instant::now();
    let read = parse_documents(text, limits);
    let took = started.elapsed();
    prop_assert!(took < BUDGET, "{} bytes took {took:?}", text.len());
    let chars = text.chars().count();
    match read {
        Ok(docs) => {
            prop_assert!(docs.len() <= limits.max_documents);
            for Document { index, start, root } in &docs {
                prop_assert!(*index >= 1 && start.offset <= chars);
                if let Some(root) = root {
                    check_positions(root, chars)?;
                }
            }
        }
        Err(e) => {
            if let Some(pos) = e.pos() {
                prop_assert!(pos.line >= 1 && pos.offset <= chars, "{e:?}");
            }
        }
    }
    Ok(())
}

/// Every node starts no later than it ends, and both are in the text.
fn check_positions(node: &Node, chars: usize) -> Result<(), TestCaseError> {
    prop_assert!(node.start.line >= 1 && node.start.column >= 1);
    prop_assert!(
        node.start.offset <= node.end.offset && node.end.offset <= chars,
        "{node:?}"
    );
    match &node.value {
        Value::Seq(items) => items.iter().try_for_each(|n| check_positions(n, chars)),
        Value::Map(entries) => entries.iter().try_for_each(|(k, v)| {
            check_positions(k, chars)?;
            check_positions(v, chars)
        }),
        _ => Ok(()),
    }
}

/// One piece of damage to a valid file.
#[derive(Clone, Debug)]
enum Damage {
    Delete(Index, usize),
    Insert(Index, &'static str),
    Replace(Index, char),
    /// Copies a run of characters to another place.
    Duplicate(Index, usize, Index),
}

fn damage() -> impl Strategy<Value = Damage> {
    let token = proptest::sample::select(TOKENS);
    prop_oneof![
        (any::<Index>(), 1..8usize).prop_map(|(at, n)| Damage::Delete(at, n)),
        (any::<Index>(), token).prop_map(|(at, t)| Damage::Insert(at, t)),
        (any::<Index>(), any::<char>()).prop_map(|(at, c)| Damage::Replace(at, c)),
        (any::<Index>(), 1..40usize, any::<Index>())
            .prop_map(|(at, n, to)| Damage::Duplicate(at, n, to)),
    ]
}

fn apply(text: &str, damages: &[Damage]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for damage in damages {
        if chars.is_empty() {
            break;
        }
        let len = chars.len();
        match damage {
            Damage::Delete(at, n) => {
                let at = at.index(len);
                chars.drain(at..(at + n).min(len));
            }
            Damage::Insert(at, token) => {
                let at = at.index(len + 1);
                chars.splice(at..at, token.chars());
            }
            Damage::Replace(at, c) => chars[at.index(len)] = *c,
            Damage::Duplicate(at, n, to) => {
                let at = at.index(len);
                let run: Vec<char> = chars[at..(at + n).min(len)].to_vec();
                let to = to.index(len + 1);
                chars.splice(to..to, run);
            }
        }
    }
    chars.into_iter().collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_are_read_or_refused_in_bounded_time(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        let text = String::from_utf8_lossy(&bytes);
        parse(&text, &Limits::default())?;
        parse(&text, &TIGHT)?;
    }

    #[test]
    fn yaml_tokens_in_any_order_are_read_or_refused_in_bounded_time(
        tokens in proptest::collection::vec(proptest::sample::select(TOKENS), 0..400),
    ) {
        let text = tokens.concat();
        parse(&text, &Limits::default())?;
        parse(&text, &TIGHT)?;
    }

    /// Damaged definitions go through everything that reads user files: the parser, the
    /// validation, and the writer, which edits such a file only when it reads back right.
    #[test]
    fn damaged_definitions_are_read_validated_and_edited_or_refused(
        file in files::file(),
        damages in proptest::collection::vec(damage(), 1..6),
        to in files::version(),
    ) {
        let text = apply(&file.text, &damages);
        parse(&text, &Limits::default())?;
        parse(&text, &TIGHT)?;
        let started = Instant::now();
        validate_file("apps/web.yaml", &text, &Limits::default());
        let kind = file.layout.kind.name();
        let edited = set_version(&text, kind, Some(NAMESPACE), NAME, &file.layout.from, &to);
        let took = started.elapsed();
        prop_assert!(took < BUDGET, "validating and editing took {took:?}");
        if let Ok(Edit::Edited(edited)) = edited {
            // Every document reads as before, but for the version of one.
            let before = documents(&text);
            let after = documents(&edited);
            prop_assert_eq!(before.len(), after.len());
            let changed: Vec<usize> = (0..before.len()).filter(|&i| before[i] != after[i]).collect();
            prop_assert!(changed.len() <= 1, "documents {changed:?} changed");
            for i in changed {
                prop_assert_eq!(&after[i], &with_version(&before[i], &to));
            }
        }
    }
}
