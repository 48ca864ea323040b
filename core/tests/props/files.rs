//! Generated definition files: one ManagedApplication or Bestie document (the target, `web` in
//! namespace `prod`) among decoy documents, written the many ways people write YAML: comments on
//! their own lines and after values, a reserved directive, anchors and aliases, CRLF line endings, a byte order mark,
//! block and flow mappings, plain, single- and double-quoted scalars, unrelated keys, several
//! documents with and without end markers. The generator knows where it wrote the version's
//! bytes, so a test can tell the intended change from any other.

use std::ops::Range;

use proptest::prelude::*;

/// The target's name and namespace; decoys never match them both.
pub const NAME: &str = "web";
pub const NAMESPACE: &str = "prod";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    ManagedApplication,
    Bestie,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::ManagedApplication => "ManagedApplication",
            Kind::Bestie => "Bestie",
        }
    }

    fn api_version(self) -> &'static str {
        match self {
            Kind::ManagedApplication => "bosun.dev/v1alpha1",
            Kind::Bestie => "pets.bestie.com/v1",
        }
    }

    fn other(self) -> Kind {
        match self {
            Kind::ManagedApplication => Kind::Bestie,
            Kind::Bestie => Kind::ManagedApplication,
        }
    }
}

/// How a scalar is quoted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quote {
    Plain,
    Single,
    Double,
}

impl Quote {
    /// `s` written in this style. Plain is for text known to be plain-safe.
    pub fn render(self, s: &str) -> String {
        match self {
            Quote::Plain => s.to_owned(),
            Quote::Single => format!("'{}'", s.replace('\'', "''")),
            Quote::Double => format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")),
        }
    }
}

/// How the target's `spec.version` gets its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// `version: 1.5.0`
    Direct,
    /// `version: &v 1.5.0`, the anchor used nowhere.
    Anchored,
    /// `version: !!str 1.5.0`
    Tagged,
    /// `version: &v 1.5.0` and another field `*v`: an edit would change both.
    SharedAnchor,
    /// `version: *v`, the value written in another field.
    Alias,
    /// `<<: *defaults` brings the version from a mapping other fields use too.
    Merged,
    /// `version: |-` and the value on the next line.
    BlockScalar,
}

impl Form {
    /// Whether the writer can edit the version's bytes and nothing else.
    pub fn editable(self) -> bool {
        match self {
            Form::Direct | Form::Anchored | Form::Tagged => true,
            Form::SharedAnchor | Form::Alias | Form::Merged | Form::BlockScalar => false,
        }
    }
}

/// How the target's `spec` mapping is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpecStyle {
    Block,
    /// `spec: {a: 1, version: 1.5.0}` on one line.
    Flow,
    /// A flow mapping with one entry per line.
    FlowLines,
}

/// A scalar or small collection that is not the version; `From` writes the version's own text
/// there, so that an edit of the wrong occurrence shows.
#[derive(Clone, Debug)]
pub enum Value {
    Text(String),
    From(Quote),
}

/// An unrelated key and its value.
#[derive(Clone, Debug)]
pub struct Extra {
    key: String,
    key_quote: Quote,
    value: Value,
}

/// A document other than the target.
#[derive(Clone, Debug)]
pub enum Decoy {
    /// An application that must not match: another name, another namespace or another kind.
    App {
        kind: Kind,
        name: &'static str,
        namespace: Option<&'static str>,
        flow: bool,
    },
    /// A ConfigMap whose data holds the version's text too.
    ConfigMap,
    /// A document of nothing but a comment.
    CommentOnly,
}

/// Everything that shapes a generated file.
#[derive(Clone, Debug)]
pub struct Layout {
    pub kind: Kind,
    pub crlf: bool,
    pub bom: bool,
    pub header_comment: bool,
    /// A reserved directive with non-ASCII text before the first document.
    pub directive: bool,
    pub indent: usize,
    pub namespace: bool,
    pub flow_metadata: bool,
    pub shared_labels: bool,
    pub spec: SpecStyle,
    pub quote: Quote,
    pub form: Form,
    pub comments: bool,
    pub trailing_comment: bool,
    pub env: bool,
    pub top_extras: Vec<Extra>,
    pub spec_before: Vec<Extra>,
    pub spec_after: Vec<Extra>,
    pub before: Vec<Decoy>,
    pub after: Vec<Decoy>,
    pub end_markers: bool,
    pub marker_comments: bool,
    pub from: String,
}

/// A generated file and what the generator knows about it.
#[derive(Clone, Debug)]
pub struct File {
    pub text: String,
    pub layout: Layout,
    /// The target's index among the file's documents (empty ones included).
    pub target: usize,
    /// How many documents the file has.
    pub documents: usize,
    /// The bytes of the version scalar (quotes included, anchor and tag not), for an editable form.
    pub version: Option<Range<usize>>,
}

/// A version as releases are tagged: `1.5.0`, `v2.10`, `1.5.0-rc.1`. Always plain-safe.
pub fn version() -> impl Strategy<Value = String> {
    "v?[0-9]{1,2}\\.[0-9]{1,2}(\\.[0-9]{1,2})?(-rc\\.[0-9])?"
}

fn quote() -> impl Strategy<Value = Quote> {
    prop_oneof![Just(Quote::Plain), Just(Quote::Single), Just(Quote::Double)]
}

fn form() -> impl Strategy<Value = Form> {
    // The editable forms are the common case: weight them up.
    prop_oneof![
        4 => Just(Form::Direct),
        2 => Just(Form::Anchored),
        2 => Just(Form::Tagged),
        1 => Just(Form::SharedAnchor),
        1 => Just(Form::Alias),
        1 => Just(Form::Merged),
        1 => Just(Form::BlockScalar),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        "[a-z][a-z0-9.-]{0,8}".prop_map(Value::Text),
        "[0-9]{1,4}".prop_map(Value::Text),
        "[a-z #:,'é]{0,8}".prop_map(|s| Value::Text(Quote::Single.render(&s))),
        "[a-z #:,\"\\\\é]{0,8}".prop_map(|s| Value::Text(Quote::Double.render(&s))),
        Just(Value::Text("~".to_owned())),
        Just(Value::Text("yes".to_owned())),
        Just(Value::Text("[a, 1, 'b c']".to_owned())),
        Just(Value::Text("{k: v}".to_owned())),
        quote().prop_map(Value::From),
    ]
}

/// Up to `max` unrelated entries; the keys are unique (`{prefix}0…`, `{prefix}1…`, a different
/// prefix for each list of one mapping) and never a field the writer looks at.
fn extras(prefix: &'static str, max: usize) -> impl Strategy<Value = Vec<Extra>> {
    proptest::collection::vec(("[a-z]{0,4}", quote(), value()), 0..=max).prop_map(move |entries| {
        entries
            .into_iter()
            .enumerate()
            .map(|(i, (suffix, key_quote, value))| Extra {
                key: format!("{prefix}{i}{suffix}"),
                key_quote,
                value,
            })
            .collect()
    })
}

fn decoy(kind: Kind) -> impl Strategy<Value = Decoy> {
    let app = (0..4usize, any::<bool>()).prop_map(move |(which, flow)| {
        let (kind, name, namespace) = match which {
            0 => (kind, "api", Some(NAMESPACE)),
            1 => (kind, NAME, Some("staging")),
            2 => (kind.other(), NAME, Some(NAMESPACE)),
            _ => (kind.other(), NAME, None),
        };
        Decoy::App {
            kind,
            name,
            namespace,
            flow,
        }
    });
    prop_oneof![
        3 => app,
        1 => Just(Decoy::ConfigMap),
        1 => Just(Decoy::CommentOnly),
    ]
}

fn decoys(kind: Kind) -> impl Strategy<Value = Vec<Decoy>> {
    proptest::collection::vec(decoy(kind), 0..3)
}

/// Layouts of every shape, the version given by [`version`].
pub fn layout() -> impl Strategy<Value = Layout> {
    let kind = prop_oneof![Just(Kind::ManagedApplication), Just(Kind::Bestie)];
    let spec = prop_oneof![
        2 => Just(SpecStyle::Block),
        1 => Just(SpecStyle::Flow),
        1 => Just(SpecStyle::FlowLines),
    ];
    let shape = (
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        prop_oneof![Just(2usize), Just(4usize)],
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        spec,
        quote(),
        form(),
        any::<bool>(),
    );
    let text = (
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        extras("x", 2),
        extras("xb", 3),
        extras("xa", 3),
        any::<bool>(),
        any::<bool>(),
        version(),
    );
    let fields = (kind, shape, text).prop_map(
        |(
            kind,
            (
                crlf,
                bom,
                header_comment,
                indent,
                namespace,
                flow_metadata,
                shared_labels,
                spec,
                quote,
                form,
                directive,
            ),
            (
                comments,
                trailing_comment,
                env,
                top_extras,
                spec_before,
                spec_after,
                end_markers,
                marker_comments,
                from,
            ),
        )| Layout {
            kind,
            crlf,
            bom,
            header_comment,
            directive,
            indent,
            namespace,
            flow_metadata,
            shared_labels,
            // A block scalar cannot stand in a flow mapping.
            spec: if form == Form::BlockScalar {
                SpecStyle::Block
            } else {
                spec
            },
            quote,
            form,
            comments,
            trailing_comment,
            env,
            top_extras,
            spec_before,
            spec_after,
            before: Vec::new(),
            after: Vec::new(),
            end_markers,
            marker_comments,
            from,
        },
    );
    // The decoys depend on the kind: other apps of it, and apps of the other kind.
    fields.prop_flat_map(|layout| {
        let kind = layout.kind;
        (Just(layout), decoys(kind), decoys(kind)).prop_map(|(layout, before, after)| Layout {
            before,
            after,
            ..layout
        })
    })
}

/// Generated files.
pub fn file() -> impl Strategy<Value = File> {
    layout().prop_map(|layout| render(&layout))
}

/// Generated files whose version the writer can edit.
pub fn editable_file() -> impl Strategy<Value = File> {
    let editable = proptest::sample::select(vec![Form::Direct, Form::Anchored, Form::Tagged]);
    (layout(), editable).prop_map(|(mut layout, form)| {
        layout.form = form;
        render(&layout)
    })
}

/// The text being written, with the place of the version's bytes.
struct Out {
    text: String,
    eol: &'static str,
    version: Option<Range<usize>>,
}

impl Out {
    fn push(&mut self, s: &str) {
        self.text.push_str(s);
    }

    fn line(&mut self, s: &str) {
        self.text.push_str(s);
        self.text.push_str(self.eol);
    }

    /// Writes the version scalar and remembers where it is.
    fn version(&mut self, s: &str) {
        let start = self.text.len();
        self.text.push_str(s);
        self.version = Some(start..self.text.len());
    }
}

/// Writes `layout` out as a file.
pub fn render(layout: &Layout) -> File {
    let mut out = Out {
        text: String::new(),
        eol: if layout.crlf { "\r\n" } else { "\n" },
        version: None,
    };
    if layout.bom {
        out.push("\u{feff}");
    }
    if layout.header_comment {
        out.line("# Applications of the prod namespace. Owned by team-shop.");
    }
    if layout.directive {
        out.line("%BOSUN-TÉST fünf");
    }
    let pieces = layout
        .before
        .iter()
        .map(Some)
        .chain([None])
        .chain(layout.after.iter().map(Some));
    let (mut documents, mut target) = (0, 0);
    for piece in pieces {
        // The first document may go without a marker when it has content: a comment alone before
        // the first marker is no document, and a directive needs one.
        let first_needs_one = layout.directive || matches!(piece, Some(Decoy::CommentOnly));
        if documents > 0 || layout.marker_comments || first_needs_one {
            out.line(if layout.marker_comments {
                "--- # next"
            } else {
                "---"
            });
        }
        match piece {
            Some(decoy) => write_decoy(&mut out, layout, decoy),
            None => {
                write_target(&mut out, layout);
                target = documents;
            }
        }
        documents += 1;
    }
    let version = layout.form.editable().then_some(out.version).flatten();
    File {
        text: out.text,
        layout: layout.clone(),
        target,
        documents,
        version,
    }
}

fn render_extra(extra: &Extra, from: &str) -> String {
    let value = match &extra.value {
        Value::Text(text) => text.clone(),
        Value::From(quote) => quote.render(from),
    };
    format!("{}: {value}", extra.key_quote.render(&extra.key))
}

fn write_target(out: &mut Out, layout: &Layout) {
    let i = " ".repeat(layout.indent);
    let from = layout.from.as_str();
    let version = layout.quote.render(from);
    out.line(&format!("apiVersion: {}", layout.kind.api_version()));
    out.line(&format!("kind: {}", layout.kind.name()));
    for extra in &layout.top_extras {
        out.line(&render_extra(extra, from));
    }
    let mut metadata = vec![format!("name: {NAME}")];
    if layout.namespace {
        metadata.push(format!("namespace: {NAMESPACE}"));
    }
    if layout.shared_labels {
        metadata.push("labels: &l {team: web}".to_owned());
        metadata.push("annotations: *l".to_owned());
    }
    if layout.flow_metadata {
        out.line(&format!("metadata: {{{}}}", metadata.join(", ")));
    } else {
        out.line("metadata:");
        for entry in &metadata {
            out.line(&format!("{i}{entry}"));
        }
    }
    // Where the version's value is written when it is not in spec.
    match layout.form {
        Form::Alias => out.line(&format!("x-version: &v {version}")),
        Form::Merged => out.line(&format!(
            "x-defaults: &d {{version: {version}, replicas: 2}}"
        )),
        _ => {}
    }
    if layout.comments {
        out.line("# What runs:");
    }
    // spec's entries, the version's marked with `None`.
    let mut entries: Vec<Option<String>> = Vec::new();
    entries.extend(
        layout
            .spec_before
            .iter()
            .map(|e| Some(render_extra(e, from))),
    );
    entries.push(None);
    if layout.form == Form::SharedAnchor {
        entries.push(Some("x-same: *v".to_owned()));
    }
    if layout.env && layout.spec == SpecStyle::Block {
        entries.push(Some(format!(
            "env:{eol}{i}- name: MODE{eol}{i}  value: {from}",
            eol = out.eol
        )));
    }
    entries.extend(
        layout
            .spec_after
            .iter()
            .map(|e| Some(render_extra(e, from))),
    );
    let trailing = if layout.trailing_comment {
        " # bumped by CI"
    } else {
        ""
    };
    let version_entry = |out: &mut Out| match layout.form {
        Form::Direct | Form::SharedAnchor | Form::Anchored | Form::Tagged => {
            out.push("version: ");
            match layout.form {
                Form::Anchored | Form::SharedAnchor => out.push("&v "),
                Form::Tagged => out.push("!!str "),
                _ => {}
            }
            out.version(&version);
        }
        Form::Alias => out.push("version: *v"),
        Form::Merged => out.push("<<: *d"),
        // A comment goes after the indicator: after the value it would be the value's text.
        Form::BlockScalar => out.push(&format!("version: |-{trailing}{}{i}{i}{from}", out.eol)),
    };
    let trailing = if layout.form == Form::BlockScalar {
        ""
    } else {
        trailing
    };
    match layout.spec {
        SpecStyle::Block => {
            out.line("spec:");
            if layout.comments {
                out.line(&format!("{i}# the version Bosun rolls"));
            }
            for entry in &entries {
                out.push(&i);
                match entry {
                    Some(text) => out.push(text),
                    None => {
                        version_entry(out);
                        out.push(trailing);
                    }
                }
                out.push(out.eol);
            }
        }
        SpecStyle::Flow => {
            out.push("spec: {");
            for (n, entry) in entries.iter().enumerate() {
                if n > 0 {
                    out.push(", ");
                }
                match entry {
                    Some(text) => out.push(text),
                    None => version_entry(out),
                }
            }
            out.push("}");
            out.line(trailing);
        }
        SpecStyle::FlowLines => {
            out.line("spec: {");
            for (n, entry) in entries.iter().enumerate() {
                out.push(&i);
                match entry {
                    Some(text) => out.push(text),
                    None => version_entry(out),
                }
                if n + 1 < entries.len() {
                    out.push(",");
                } else {
                    out.push("}");
                }
                // A comment in a flow mapping goes after the separator.
                if entry.is_none() {
                    out.push(trailing);
                }
                out.push(out.eol);
            }
        }
    }
    if layout.end_markers {
        out.line("...");
    }
}

fn write_decoy(out: &mut Out, layout: &Layout, decoy: &Decoy) {
    let from = layout.from.as_str();
    match decoy {
        Decoy::App {
            kind,
            name,
            namespace,
            flow,
        } => {
            let namespace = namespace.map_or(String::new(), |ns| format!(", namespace: {ns}"));
            if *flow {
                out.line(&format!(
                    "{{kind: {}, metadata: {{name: {name}{namespace}}}, spec: {{version: {from}}}}}",
                    kind.name()
                ));
            } else {
                out.line(&format!("kind: {}", kind.name()));
                out.line(&format!("metadata: {{name: {name}{namespace}}}"));
                out.line("spec:");
                out.line(&format!("  version: {from}  # not this one"));
            }
        }
        Decoy::ConfigMap => {
            out.line("kind: ConfigMap");
            out.line("metadata: {name: web-config}");
            out.line("data:");
            out.line(&format!("  version: '{from}'"));
        }
        Decoy::CommentOnly => out.line("# nothing here yet"),
    }
    if layout.end_markers {
        out.line("...");
    }
}
