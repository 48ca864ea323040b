//! YAML at the boundary: text becomes a tree of [`Node`]s that remember where they stood.
//!
//! This is the only module that reads YAML. It resolves plain scalars the way `kubectl` does (YAML 1.1:
//! `yes`/`on` are booleans, `0755` is octal), keeps each scalar's raw text and style so that validation
//! can say "`1.10` was read as a number; quote it", and refuses hostile input in bounded time and memory:
//! files over [`Limits::max_bytes`], nesting deeper than [`Limits::max_depth`], more nodes (counting alias
//! expansions, so alias bombs stop early) than [`Limits::max_nodes`], more documents than
//! [`Limits::max_documents`].
//!
//! Merge keys (`<<: *defaults`, or `<<: [*a, *b]`) are resolved as YAML's merge-key type defines them:
//! the keys of the merged mappings are added where the mapping does not set them itself (its own keys
//! win wherever they stand, and an earlier mapping of a list wins over a later one).

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

/// Bounds on what one file may cost to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest file accepted, in bytes.
    pub max_bytes: usize,
    /// Deepest nesting of mappings and sequences.
    pub max_depth: usize,
    /// Most nodes in one file, counting every node an alias expands to.
    pub max_nodes: usize,
    /// Most documents in one file.
    pub max_documents: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 1024 * 1024,
            max_depth: 64,
            max_nodes: 200_000,
            max_documents: 1_000,
        }
    }
}

/// A place in the text: 1-based line and column, and the character offset from the start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
    /// Offset in characters (not bytes) from the start of the text.
    pub offset: usize,
}

/// Character offsets of the parser's markers.
///
/// saphyr-parser 0.3 counts the *bytes* of a directive's name and parameters (`%FÖÖ bär`) into a
/// marker's character index, so every later index of the file runs ahead of its place (its lines
/// and columns stay right). Directives stand only before a `---`, so the index is measured again
/// at each `---`, whose true offset its line tells.
struct Offsets {
    /// The character offset where each line starts, after any byte order marks: the only
    /// characters that may come before a `---` on its line.
    line_starts: Vec<usize>,
    chars: usize,
    /// How far the parser's index runs ahead, as measured at the last `---`.
    ahead: usize,
}

impl Offsets {
    fn of(text: &str) -> Offsets {
        let mut line_starts = Vec::new();
        let mut at_line_start = true;
        let mut chars = text.chars().peekable();
        let mut count = 0;
        while let Some(c) = chars.next() {
            if at_line_start && c != '\u{feff}' {
                line_starts.push(count);
                at_line_start = false;
            }
            count += 1;
            // Line breaks as the parser reads them: `\r\n`, `\n`, `\r`.
            if c == '\n' || (c == '\r' && chars.peek() != Some(&'\n')) {
                at_line_start = true;
            }
        }
        if at_line_start {
            line_starts.push(count);
        }
        Offsets {
            line_starts,
            chars: count,
            ahead: 0,
        }
    }

    /// Measures the index at an explicit document start: the `---` begins its line.
    fn document_marker(&mut self, m: saphyr_parser::Marker) {
        let line_start = m
            .line()
            .checked_sub(1)
            .and_then(|l| self.line_starts.get(l));
        if let (Some(&offset), 0) = (line_start, m.col()) {
            self.ahead = m.index().saturating_sub(offset);
        }
    }

    fn pos(&self, m: saphyr_parser::Marker) -> Pos {
        Pos {
            line: m.line(),
            column: m.col() + 1,
            offset: m.index().saturating_sub(self.ahead).min(self.chars),
        }
    }
}

/// How a scalar was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    Plain,
    SingleQuoted,
    DoubleQuoted,
    Literal,
    Folded,
}

impl From<ScalarStyle> for Style {
    fn from(s: ScalarStyle) -> Self {
        match s {
            ScalarStyle::Plain => Style::Plain,
            ScalarStyle::SingleQuoted => Style::SingleQuoted,
            ScalarStyle::DoubleQuoted => Style::DoubleQuoted,
            ScalarStyle::Literal => Style::Literal,
            ScalarStyle::Folded => Style::Folded,
        }
    }
}

/// A resolved YAML value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

/// A value with the place it was written and, for scalars, its raw text and style.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub value: Value,
    pub start: Pos,
    pub end: Pos,
    /// The scalar's text as written (after unescaping), for scalars only.
    pub raw: Option<String>,
    pub style: Option<Style>,
}

impl Node {
    /// What kind of value this is, in words for error messages.
    pub fn describe(&self) -> String {
        match &self.value {
            Value::Null => "nothing (null)".to_string(),
            Value::Bool(b) => format!("the boolean {b}"),
            Value::Int(_) | Value::Float(_) => {
                format!("the number {}", self.raw.as_deref().unwrap_or("?"))
            }
            Value::Str(s) => format!("the string {s:?}"),
            Value::Seq(_) => "a list".to_string(),
            Value::Map(_) => "a mapping".to_string(),
        }
    }

    /// The value under `key` when this is a mapping with string keys.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Follows a field path (`spec`, `upgradeStrategy`, `steps`, `1`) as far as it goes and returns the
    /// deepest node reached, so that an error can point at the closest place that exists.
    pub fn closest(&self, path: &[PathSeg]) -> &Node {
        let mut node = self;
        for seg in path {
            let next = match (seg, &node.value) {
                (PathSeg::Field(f), Value::Map(_)) => node.get(f),
                (PathSeg::Index(i), Value::Seq(items)) => items.get(*i),
                _ => None,
            };
            match next {
                Some(n) => node = n,
                None => break,
            }
        }
        node
    }

    /// The node at exactly this path, if there is one.
    pub fn at(&self, path: &[PathSeg]) -> Option<&Node> {
        path.iter()
            .try_fold(self, |node, seg| match (seg, &node.value) {
                (PathSeg::Field(f), Value::Map(_)) => node.get(f),
                (PathSeg::Index(i), Value::Seq(items)) => items.get(*i),
                _ => None,
            })
    }

    /// The key node for a field of this mapping, to point at the key rather than its value.
    pub fn key_of(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(k, _)| k),
            _ => None,
        }
    }

    /// Converts to JSON the way `kubectl` sends YAML to the API server. Null-valued mapping entries are
    /// dropped, as the API server prunes them for fields that are not nullable.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => J::Object(
                entries
                    .iter()
                    .filter(|(_, v)| v.value != Value::Null)
                    .map(|(k, v)| (k.key_text(), v.to_json()))
                    .collect(),
            ),
        }
    }

    /// A mapping key as text: strings as they are, other scalars as written.
    pub fn key_text(&self) -> String {
        match &self.value {
            Value::Str(s) => s.clone(),
            _ => self.raw.clone().unwrap_or_default(),
        }
    }

    fn size(&self) -> usize {
        match &self.value {
            Value::Seq(items) => 1 + items.iter().map(Node::size).sum::<usize>(),
            Value::Map(entries) => {
                1 + entries
                    .iter()
                    .map(|(k, v)| k.size() + v.size())
                    .sum::<usize>()
            }
            _ => 1,
        }
    }
}

/// One step of a field path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathSeg {
    Field(String),
    Index(usize),
}

/// Renders a path as users write it: `spec.upgradeStrategy.canary.steps[1].weight`.
pub fn path_to_string(path: &[PathSeg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            PathSeg::Field(f) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(f);
            }
            PathSeg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// One document of a file: its 1-based index and its root node (`None` for an empty document).
#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    pub index: usize,
    pub start: Pos,
    pub root: Option<Node>,
}

/// Why a file could not be read as YAML.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum YamlError {
    #[error("file is {size} bytes, over the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("YAML syntax error: {reason}")]
    Syntax { pos: Pos, reason: String },
    #[error("nesting is deeper than the limit of {limit} levels")]
    TooDeep { pos: Pos, limit: usize },
    #[error(
        "the file expands to more than {limit} YAML nodes (counting what aliases repeat); \
         an alias bomb, or a file too large to be a resource definition"
    )]
    TooManyNodes { pos: Pos, limit: usize },
    #[error("the file holds more than {limit} documents")]
    TooManyDocuments { pos: Pos, limit: usize },
    #[error("alias *{anchor} refers to an anchor that is not defined before it")]
    UnknownAlias { pos: Pos, anchor: usize },
    #[error(
        "the tag {tag} is not supported; use a plain value or !!str, !!int, !!float, !!bool, !!null"
    )]
    UnsupportedTag { pos: Pos, tag: String },
    #[error("{reason}")]
    BadTaggedValue { pos: Pos, reason: String },
    #[error("the key {key:?} appears twice in this mapping (first on line {first_line})")]
    DuplicateKey {
        pos: Pos,
        key: String,
        first_line: usize,
    },
    #[error(
        "a merge key (<<) takes a mapping or a list of mappings, as in `<<: *defaults`; this is {found}"
    )]
    BadMerge { pos: Pos, found: &'static str },
}

impl YamlError {
    /// Where the error is, when it is at one place.
    pub fn pos(&self) -> Option<Pos> {
        match self {
            YamlError::TooLarge { .. } => None,
            YamlError::Syntax { pos, .. }
            | YamlError::TooDeep { pos, .. }
            | YamlError::TooManyNodes { pos, .. }
            | YamlError::TooManyDocuments { pos, .. }
            | YamlError::UnknownAlias { pos, .. }
            | YamlError::UnsupportedTag { pos, .. }
            | YamlError::BadTaggedValue { pos, .. }
            | YamlError::DuplicateKey { pos, .. }
            | YamlError::BadMerge { pos, .. } => Some(*pos),
        }
    }
}

enum Frame {
    Seq {
        start: Span,
        anchor: usize,
        items: Vec<Node>,
        /// The height of the tallest child so far (a scalar is 1).
        height: usize,
    },
    Map {
        start: Span,
        anchor: usize,
        entries: Vec<(Node, Node)>,
        pending_key: Option<Node>,
        /// The keys so far (as [`Node::key_text`]) and the line of each, so that finding a duplicate
        /// costs one lookup: a scan of `entries` per key made a file of many keys quadratic.
        keys: HashMap<String, usize>,
        height: usize,
    },
}

/// Parses every document of `text`.
///
/// # Errors
/// A [`YamlError`] for syntax errors, unsupported tags, duplicate keys and every limit exceeded. Parsing
/// stops at the first such error: what follows a syntax error cannot be trusted.
pub fn parse_documents(text: &str, limits: &Limits) -> Result<Vec<Document>, YamlError> {
    if text.len() > limits.max_bytes {
        return Err(YamlError::TooLarge {
            size: text.len(),
            limit: limits.max_bytes,
        });
    }
    let mut docs = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    // Each anchored node with its height, so that an alias cannot paste a subtree deeper than the limit.
    let mut anchors: HashMap<usize, (Node, usize)> = HashMap::new();
    let mut nodes = 0usize;
    let mut doc_start = Pos::default();
    let mut root: Option<Node> = None;
    let mut offsets = Offsets::of(text);

    for item in Parser::new_from_str(text) {
        let (event, span) = item.map_err(|e| YamlError::Syntax {
            pos: offsets.pos(*e.marker()),
            reason: e.info().to_string(),
        })?;
        if matches!(event, Event::DocumentStart(true)) {
            offsets.document_marker(span.start);
        }
        let pos = offsets.pos(span.start);
        let finished: Option<(Node, usize, usize)> = match event {
            Event::StreamStart | Event::StreamEnd | Event::Nothing => None,
            Event::DocumentStart(_) => {
                if docs.len() >= limits.max_documents {
                    return Err(YamlError::TooManyDocuments {
                        pos,
                        limit: limits.max_documents,
                    });
                }
                doc_start = pos;
                root = None;
                anchors.clear();
                None
            }
            Event::DocumentEnd => {
                docs.push(Document {
                    index: docs.len() + 1,
                    start: doc_start,
                    // A document of nothing but comments reads as one empty plain scalar.
                    root: root
                        .take()
                        .filter(|r| !(r.value == Value::Null && r.raw.as_deref() == Some(""))),
                });
                None
            }
            Event::Alias(id) => {
                let (node, height) = anchors
                    .get(&id)
                    .ok_or(YamlError::UnknownAlias { pos, anchor: id })?;
                if stack.len() + height > limits.max_depth {
                    return Err(YamlError::TooDeep {
                        pos,
                        limit: limits.max_depth,
                    });
                }
                nodes += node.size();
                if nodes > limits.max_nodes {
                    return Err(YamlError::TooManyNodes {
                        pos,
                        limit: limits.max_nodes,
                    });
                }
                let mut copy = node.clone();
                copy.start = pos;
                copy.end = offsets.pos(span.end);
                Some((copy, 0, *height))
            }
            Event::Scalar(text, style, anchor, tag) => {
                nodes += 1;
                if nodes > limits.max_nodes {
                    return Err(YamlError::TooManyNodes {
                        pos,
                        limit: limits.max_nodes,
                    });
                }
                let value = resolve_scalar(&text, style, tag.as_deref(), pos)?;
                Some((
                    Node {
                        value,
                        start: pos,
                        end: offsets.pos(span.end),
                        raw: Some(text.into_owned()),
                        style: Some(style.into()),
                    },
                    anchor,
                    1,
                ))
            }
            Event::SequenceStart(anchor, ref tag) | Event::MappingStart(anchor, ref tag) => {
                let is_seq = matches!(event, Event::SequenceStart(..));
                if let Some(tag) = tag.as_deref()
                    && !(tag.handle == "tag:yaml.org,2002:"
                        && matches!(tag.suffix.as_str(), "seq" | "map"))
                {
                    return Err(YamlError::UnsupportedTag {
                        pos,
                        tag: format!("{}{}", tag.handle, tag.suffix),
                    });
                }
                nodes += 1;
                if stack.len() >= limits.max_depth {
                    return Err(YamlError::TooDeep {
                        pos,
                        limit: limits.max_depth,
                    });
                }
                if nodes > limits.max_nodes {
                    return Err(YamlError::TooManyNodes {
                        pos,
                        limit: limits.max_nodes,
                    });
                }
                stack.push(if is_seq {
                    Frame::Seq {
                        start: span,
                        anchor,
                        items: Vec::new(),
                        height: 0,
                    }
                } else {
                    Frame::Map {
                        start: span,
                        anchor,
                        entries: Vec::new(),
                        pending_key: None,
                        keys: HashMap::new(),
                        height: 0,
                    }
                });
                None
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let end = offsets.pos(span.end);
                match stack.pop() {
                    Some(Frame::Seq {
                        start,
                        anchor,
                        items,
                        height,
                    }) => Some((
                        Node {
                            value: Value::Seq(items),
                            start: offsets.pos(start.start),
                            end,
                            raw: None,
                            style: None,
                        },
                        anchor,
                        height + 1,
                    )),
                    Some(Frame::Map {
                        start,
                        anchor,
                        entries,
                        height,
                        ..
                    }) => Some((
                        Node {
                            value: Value::Map(merge_keys(entries)?),
                            start: offsets.pos(start.start),
                            end,
                            raw: None,
                            style: None,
                        },
                        anchor,
                        height + 1,
                    )),
                    None => None,
                }
            }
        };
        if let Some((node, anchor, node_height)) = finished {
            if anchor != 0 {
                anchors.insert(anchor, (node.clone(), node_height));
            }
            match stack.last_mut() {
                None => root = Some(node),
                Some(Frame::Seq { items, height, .. }) => {
                    *height = (*height).max(node_height);
                    items.push(node);
                }
                Some(Frame::Map {
                    entries,
                    pending_key,
                    keys,
                    height,
                    ..
                }) => match pending_key.take() {
                    None => {
                        match keys.entry(node.key_text()) {
                            Entry::Occupied(first) => {
                                return Err(YamlError::DuplicateKey {
                                    pos: node.start,
                                    key: first.key().clone(),
                                    first_line: *first.get(),
                                });
                            }
                            Entry::Vacant(slot) => {
                                slot.insert(node.start.line);
                            }
                        }
                        *pending_key = Some(node);
                    }
                    Some(key) => {
                        *height = (*height).max(node_height);
                        entries.push((key, node));
                    }
                },
            }
        }
    }
    Ok(docs)
}

/// Resolves the merge keys (`<<`) of a mapping's entries: the merged mappings' keys come after the
/// mapping's own, only where it does not set them; the first mapping of a list wins.
fn merge_keys(entries: Vec<(Node, Node)>) -> Result<Vec<(Node, Node)>, YamlError> {
    let is_merge = |k: &Node| k.style == Some(Style::Plain) && k.raw.as_deref() == Some("<<");
    if !entries.iter().any(|(k, _)| is_merge(k)) {
        return Ok(entries);
    }
    let (merges, mut own): (Vec<_>, Vec<_>) = entries.into_iter().partition(|(k, _)| is_merge(k));
    // A set, not a scan of `own` per merged key: aliases repeat large mappings cheaply.
    let mut keys: HashSet<String> = own.iter().map(|(k, _)| k.key_text()).collect();
    let kind = |n: &Node| match &n.value {
        Value::Map(_) => "a mapping",
        Value::Seq(_) => "a list",
        Value::Null => "null",
        _ => "a scalar",
    };
    for (_, value) in merges {
        let sources = match value.value {
            Value::Map(_) => vec![value],
            Value::Seq(items) => items,
            _ => {
                return Err(YamlError::BadMerge {
                    pos: value.start,
                    found: kind(&value),
                });
            }
        };
        for source in sources {
            let Value::Map(merged) = source.value else {
                return Err(YamlError::BadMerge {
                    pos: source.start,
                    found: kind(&source),
                });
            };
            for (k, v) in merged {
                if keys.insert(k.key_text()) {
                    own.push((k, v));
                }
            }
        }
    }
    Ok(own)
}

fn resolve_scalar(
    text: &str,
    style: ScalarStyle,
    tag: Option<&saphyr_parser::Tag>,
    pos: Pos,
) -> Result<Value, YamlError> {
    if let Some(tag) = tag {
        if tag.handle == "!" && tag.suffix.is_empty() {
            // The non-specific tag `!` makes a plain scalar a string.
            return Ok(Value::Str(text.to_string()));
        }
        if tag.handle != "tag:yaml.org,2002:" {
            return Err(YamlError::UnsupportedTag {
                pos,
                tag: format!("{}{}", tag.handle, tag.suffix),
            });
        }
        let bad = |what: &str| YamlError::BadTaggedValue {
            pos,
            reason: format!(
                "{text:?} is not a valid {what} for the tag !!{}",
                tag.suffix
            ),
        };
        return match tag.suffix.as_str() {
            "str" => Ok(Value::Str(text.to_string())),
            "int" => resolve_int(text)
                .map(Value::Int)
                .ok_or_else(|| bad("integer")),
            "float" => resolve_float(text)
                .or_else(|| resolve_int(text).map(|i| i as f64))
                .map(Value::Float)
                .ok_or_else(|| bad("number")),
            "bool" => resolve_bool(text)
                .map(Value::Bool)
                .ok_or_else(|| bad("boolean")),
            "null" => resolve_null(text)
                .then_some(Value::Null)
                .ok_or_else(|| bad("null")),
            other => Err(YamlError::UnsupportedTag {
                pos,
                tag: format!("!!{other}"),
            }),
        };
    }
    if style != ScalarStyle::Plain {
        return Ok(Value::Str(text.to_string()));
    }
    Ok(resolve_plain(text))
}

/// Resolves a plain (unquoted) scalar as kubectl's YAML 1.1 reader does.
pub fn resolve_plain(text: &str) -> Value {
    if resolve_null(text) {
        Value::Null
    } else if let Some(b) = resolve_bool(text) {
        Value::Bool(b)
    } else if let Some(i) = resolve_int(text) {
        Value::Int(i)
    } else if let Some(f) = resolve_float(text) {
        Value::Float(f)
    } else {
        Value::Str(text.to_string())
    }
}

fn resolve_null(text: &str) -> bool {
    matches!(text, "" | "~" | "null" | "Null" | "NULL")
}

fn resolve_bool(text: &str) -> Option<bool> {
    match text {
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            Some(true)
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            Some(false)
        }
        _ => None,
    }
}

fn resolve_int(text: &str) -> Option<i64> {
    let (neg, body) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let body = body.replace('_', "");
    if body.is_empty() {
        return None;
    }
    let (digits, radix) = if let Some(h) = body.strip_prefix("0x") {
        (h.to_string(), 16)
    } else if let Some(b) = body.strip_prefix("0b") {
        (b.to_string(), 2)
    } else if let Some(o) = body.strip_prefix("0o") {
        (o.to_string(), 8)
    } else if body.len() > 1 && body.starts_with('0') {
        (body[1..].to_string(), 8)
    } else {
        (body.clone(), 10)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = i64::from_str_radix(&digits, radix).ok()?;
    Some(if neg { -magnitude } else { magnitude })
}

fn resolve_float(text: &str) -> Option<f64> {
    match text {
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => return Some(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return Some(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Some(f64::NAN),
        _ => {}
    }
    let body = text.replace('_', "");
    let unsigned = body.trim_start_matches(['-', '+']);
    // YAML 1.1 floats: digits with at most one dot and an optional exponent; no bare words like "inf".
    let mut chars = unsigned.chars().peekable();
    let mut mantissa_digits = 0;
    let mut dots = 0;
    while let Some(&c) = chars.peek() {
        if c.is_ascii_digit() {
            mantissa_digits += 1;
        } else if c == '.' {
            dots += 1;
        } else {
            break;
        }
        chars.next();
    }
    if mantissa_digits == 0 || dots > 1 {
        return None;
    }
    if let Some(e) = chars.next() {
        if e != 'e' && e != 'E' {
            return None;
        }
        let rest: String = chars.collect();
        let exp = rest.trim_start_matches(['-', '+']);
        if exp.is_empty() || !exp.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
    }
    body.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Node {
        let docs = parse_documents(text, &Limits::default()).expect("valid YAML");
        docs.into_iter()
            .next()
            .and_then(|d| d.root)
            .expect("one document")
    }

    #[test]
    fn merge_keys_add_what_the_mapping_does_not_set_the_first_source_winning() {
        let node = one("a: &a {x: 1, y: 1}\nb: &b {y: 2, z: 2}\nc:\n  <<: [*a, *b]\n  x: 0\n");
        let c = node.get("c").expect("c").to_json();
        assert_eq!(c, serde_json::json!({"x": 0, "y": 1, "z": 2}));
        let single = one("d: &d {k: v}\ne:\n  <<: *d\n");
        assert_eq!(
            single.get("e").expect("e").to_json(),
            serde_json::json!({"k": "v"})
        );
        // Quoted, `<<` is an ordinary key.
        let quoted = one("f:\n  '<<': 1\n");
        assert_eq!(
            quoted.get("f").expect("f").to_json(),
            serde_json::json!({"<<": 1})
        );
        let bad = parse_documents("g:\n  <<: [1]\n", &Limits::default());
        assert!(
            matches!(
                bad,
                Err(YamlError::BadMerge {
                    found: "a scalar",
                    ..
                })
            ),
            "{bad:?}"
        );
    }

    #[test]
    fn plain_scalars_resolve_like_kubectl() {
        let cases = [
            ("yes", Value::Bool(true)),
            ("off", Value::Bool(false)),
            ("0755", Value::Int(0o755)),
            ("0x1F", Value::Int(31)),
            ("-12", Value::Int(-12)),
            ("1.10", Value::Float(1.1)),
            ("1e3", Value::Float(1000.0)),
            ("~", Value::Null),
            ("v2.0.0", Value::Str("v2.0.0".into())),
            ("1.2.3", Value::Str("1.2.3".into())),
            ("inf", Value::Str("inf".into())),
            ("0.1-rc", Value::Str("0.1-rc".into())),
        ];
        for (text, want) in cases {
            assert_eq!(resolve_plain(text), want, "{text}");
        }
    }

    #[test]
    fn quoted_scalars_stay_strings() {
        let node = one("a: \"1.3\"\nb: '10'\nc: !!str 1.10\n");
        assert_eq!(node.get("a").and_then(Node::as_str), Some("1.3"));
        assert_eq!(node.get("b").and_then(Node::as_str), Some("10"));
        assert_eq!(node.get("c").and_then(Node::as_str), Some("1.10"));
    }

    #[test]
    fn positions_are_one_based() {
        let node = one("# comment\nspec:\n  size: 3\n");
        let size = node.closest(&[PathSeg::Field("spec".into()), PathSeg::Field("size".into())]);
        assert_eq!((size.start.line, size.start.column), (3, 9));
    }

    #[test]
    fn offsets_count_characters_after_a_directive_with_multibyte_text() {
        // saphyr-parser counts the bytes of such a directive into its index: every later offset
        // was one past its place per `Ö` and `ä`, and the writer refused to edit such a file.
        let texts = [
            "%FÖÖ bär\n---\nkind: é\nc: 1\n",
            "\u{feff}%FÖÖ bär\n---\nc: 1\n",
            "a: ü\n...\n%FÖÖ bär\n---\nb: é\nc: 1\n",
            "%FÖÖ\n--- a\n...\n\u{feff}---\nc: 1\n",
        ];
        for text in texts {
            let docs = parse_documents(text, &Limits::default()).expect("valid");
            let c = docs
                .iter()
                .find_map(|d| d.root.as_ref().and_then(|r| r.key_of("c")))
                .expect("c");
            let want = text[..text.find("c:").expect("c")].chars().count();
            assert_eq!((c.start.offset, c.start.column), (want, 1), "{text:?}");
        }
    }

    #[test]
    fn several_documents_are_numbered() {
        let docs = parse_documents("a: 1\n---\n---\nb: 2\n", &Limits::default()).expect("valid");
        assert_eq!(docs.len(), 3);
        assert!(docs[1].root.is_none());
        assert_eq!(docs[2].index, 3);
    }

    #[test]
    fn alias_bomb_is_refused_quickly() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..20 {
            let prev = format!("*a{}", i - 1);
            text.push_str(&format!(
                "a{i}: &a{i} [{prev}, {prev}, {prev}, {prev}, {prev}, {prev}, {prev}, {prev}, {prev}, {prev}]\n"
            ));
        }
        let err = parse_documents(&text, &Limits::default()).expect_err("must be refused");
        assert!(matches!(err, YamlError::TooManyNodes { .. }), "{err:?}");
    }

    #[test]
    fn deep_nesting_is_refused() {
        let text = format!("{}1{}", "[".repeat(100), "]".repeat(100));
        let err = parse_documents(&text, &Limits::default()).expect_err("must be refused");
        assert!(
            matches!(err, YamlError::TooDeep { limit: 64, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn aliases_cannot_paste_a_subtree_deeper_than_the_limit() {
        // Each anchor nests the previous alias 40 levels deeper: few nodes, but ever deeper.
        let mut text = String::from("a0: &a0 x\n");
        for i in 1..5 {
            text.push_str(&format!(
                "a{i}: &a{i} {}*a{}{}\n",
                "[".repeat(40),
                i - 1,
                "]".repeat(40)
            ));
        }
        let err = parse_documents(&text, &Limits::default()).expect_err("must be refused");
        assert!(
            matches!(err, YamlError::TooDeep { limit: 64, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn many_keys_and_merges_of_large_mappings_are_read_in_linear_time() {
        // Finding duplicate keys by a scan of the keys before each made these quadratic: the first
        // took 25 s in a debug build, and a 3 KB merge of one mapping 100 times a quarter second.
        let started = std::time::Instant::now();
        let keys: String = (0..30_000).map(|i| format!("k{i}: 1\n")).collect();
        let node = one(&keys);
        assert!(matches!(node.value, Value::Map(ref entries) if entries.len() == 30_000));
        let mapping: Vec<String> = (0..1_000).map(|i| format!("k{i}: 1")).collect();
        let merges = format!(
            "a: &a {{{}}}\nb: {{<<: [{}]}}\n",
            mapping.join(", "),
            ["*a"; 90].join(", ")
        );
        let node = one(&merges);
        assert!(
            matches!(node.get("b").map(|b| &b.value), Some(Value::Map(entries)) if entries.len() == 1_000)
        );
        let took = started.elapsed();
        assert!(took < std::time::Duration::from_secs(5), "took {took:?}");
    }

    #[test]
    fn huge_file_is_refused_before_parsing() {
        let text = "a: b\n".repeat(300_000);
        let err = parse_documents(&text, &Limits::default()).expect_err("must be refused");
        assert!(matches!(err, YamlError::TooLarge { .. }), "{err:?}");
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let err = parse_documents("a: 1\nb: 2\na: 3\n", &Limits::default()).expect_err("dup");
        assert!(
            matches!(err, YamlError::DuplicateKey { ref key, first_line: 1, .. } if key == "a"),
            "{err:?}"
        );
    }

    #[test]
    fn syntax_errors_carry_a_position() {
        let err = parse_documents("a: [1, 2\nb: 3\n", &Limits::default()).expect_err("bad");
        assert!(matches!(err, YamlError::Syntax { .. }), "{err:?}");
        assert!(err.pos().is_some());
    }

    #[test]
    fn custom_tags_are_refused() {
        let err = parse_documents("a: !secret foo\n", &Limits::default()).expect_err("tag");
        assert!(matches!(err, YamlError::UnsupportedTag { .. }), "{err:?}");
    }

    #[test]
    fn json_drops_nulls_like_the_api_server() {
        let node = one("a: 1\nb:\nc: [x, ~]\n");
        assert_eq!(
            node.to_json(),
            serde_json::json!({"a": 1, "c": ["x", null]})
        );
    }
}
