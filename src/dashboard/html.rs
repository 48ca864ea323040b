//! The dashboard's pages as HTML, laid out from the view-model ([`super::view`]). Everything that
//! comes from the cluster or git (names, versions, messages, reasons) is user input and goes through
//! [`escape`]; links are built only from escaped parts.

use std::fmt::Write as _;

use super::view::{Detail, Link, Overview, Progress, Row, Tone};

/// Escapes text for HTML content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A link target is kept only when it is an http(s) address (never `javascript:`).
fn href(url: &str) -> Option<String> {
    (url.starts_with("https://") || url.starts_with("http://")).then(|| escape(url))
}

/// Percent-encodes a path segment or query value.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn page(title: &str, live_key: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title} · Bosun</title>\n<link rel=\"stylesheet\" href=\"/assets/dashboard.css\">\n\
         <script src=\"/assets/dashboard.js\" defer></script>\n</head>\n\
         <body data-live=\"{live_key}\">\n<header class=\"top\"><a href=\"/\" class=\"brand\">Bosun</a> \
         <span class=\"sub\">rollouts, read only</span> <span id=\"live-state\" role=\"status\" \
         aria-live=\"polite\">connecting…</span></header>\n<main>\n{body}</main>\n</body>\n</html>\n",
        title = escape(title),
        live_key = escape(live_key),
    )
}

fn phase_badge(phase: &str, tone: Tone) -> String {
    format!(
        "<span class=\"phase {}\">{}</span>",
        tone.class(),
        escape(phase)
    )
}

fn progress_bar(p: &Progress) -> String {
    format!(
        "<div class=\"progress\"><progress max=\"100\" value=\"{pct}\" aria-label=\"{label}\">{pct} %</progress>\
         <span class=\"progress-label\">{label}</span></div>",
        pct = p.percent.clamp(0, 100),
        label = escape(&p.label),
    )
}

fn opt(v: &Option<String>) -> String {
    v.as_deref().map_or_else(|| "–".to_string(), escape)
}

fn row_html(out: &mut String, r: &Row) {
    let href = format!(
        "/{}/{}/{}",
        r.kind.segment(),
        encode(&r.namespace),
        encode(&r.name)
    );
    let _ = write!(
        out,
        "<tr class=\"{tone}\" data-app=\"{key}\">\
         <td data-label=\"Namespace\">{ns}</td>\
         <th scope=\"row\" data-label=\"Name\"><a href=\"{href}\">{name}</a> <span class=\"kind\">{kind}</span></th>\
         <td data-label=\"Phase\">{phase}</td>\
         <td data-label=\"Current\">{cur}<br><code>{cur_rev}</code></td>\
         <td data-label=\"Target\">{tgt}<br><code>{tgt_rev}</code>{commit}</td>\
         <td data-label=\"Strategy\">{strategy}</td>\
         <td data-label=\"Progress\">{progress}</td>\
         <td data-label=\"Notes\">",
        tone = r.tone.class(),
        key = escape(&format!("{}/{}/{}", r.kind.segment(), r.namespace, r.name)),
        ns = escape(&r.namespace),
        name = escape(&r.name),
        kind = r.kind.label(),
        phase = phase_badge(&r.phase, r.tone),
        cur = opt(&r.current_version),
        cur_rev = opt(&r.current_revision),
        tgt = opt(&r.target_version),
        tgt_rev = opt(&r.target_revision),
        commit = r
            .commit
            .as_deref()
            .map(|c| format!(
                "<br><code>commit {}</code>",
                escape(&c.chars().take(7).collect::<String>())
            ))
            .unwrap_or_default(),
        strategy = escape(&r.strategy),
        progress = r.progress.as_ref().map(progress_bar).unwrap_or_default(),
    );
    if let Some(f) = &r.failure {
        let _ = write!(
            out,
            "<p class=\"failure\"><strong>Failed:</strong> {}</p>",
            escape(f)
        );
    }
    for w in &r.waiting {
        let _ = write!(out, "<p class=\"waiting\">{}</p>", escape(w));
    }
    out.push_str("</td></tr>\n");
}

fn select(out: &mut String, id: &str, label: &str, choices: &[String], chosen: &str) {
    let _ = write!(
        out,
        "<label for=\"{id}\">{label}</label> <select id=\"{id}\" name=\"{id}\"><option value=\"\">all</option>"
    );
    for c in choices {
        let _ = write!(
            out,
            "<option value=\"{v}\"{sel}>{v}</option>",
            v = escape(c),
            sel = if c == chosen { " selected" } else { "" }
        );
    }
    out.push_str("</select> ");
}

/// The overview: every app and Bestie the filter keeps.
pub fn overview(o: &Overview) -> String {
    let mut body = String::with_capacity(512 + o.rows.len() * 900);
    let _ = write!(
        body,
        "<h1>Rollouts</h1>\n<form method=\"get\" action=\"/\" class=\"filter\" aria-label=\"Filter\">"
    );
    select(
        &mut body,
        "namespace",
        "Namespace",
        &o.namespaces,
        &o.filter.namespace,
    );
    select(&mut body, "phase", "Phase", &o.phases, &o.filter.phase);
    body.push_str("<button type=\"submit\">Filter</button></form>\n<div id=\"live\">\n");
    let _ = writeln!(
        body,
        "<p class=\"count\">{} of {} shown</p>",
        o.rows.len(),
        o.total
    );
    if o.rows.is_empty() {
        body.push_str("<p class=\"empty\">No application matches.</p>\n");
    } else {
        body.push_str(
            "<div class=\"table-wrap\"><table class=\"apps\">\n<caption>Applications and Besties</caption>\n\
             <thead><tr><th scope=\"col\">Namespace</th><th scope=\"col\">Name</th><th scope=\"col\">Phase</th>\
             <th scope=\"col\">Current</th><th scope=\"col\">Target</th><th scope=\"col\">Strategy</th>\
             <th scope=\"col\">Progress</th><th scope=\"col\">Notes</th></tr></thead>\n<tbody>\n",
        );
        for r in &o.rows {
            row_html(&mut body, r);
        }
        body.push_str("</tbody></table></div>\n");
    }
    body.push_str("</div>\n");
    page("Rollouts", "*", &body)
}

fn link(l: &Link) -> String {
    match l.href.as_deref().and_then(href) {
        Some(h) => format!("<a href=\"{h}\" rel=\"noreferrer\">{}</a>", escape(&l.text)),
        None => format!("<code>{}</code>", escape(&l.text)),
    }
}

/// One term of the summary; `html` is already escaped.
fn term(body: &mut String, term: &str, id: &str, html: &str) {
    let _ = write!(body, "<dt>{term}</dt><dd id=\"{id}\">{html}</dd>");
}

/// An app's page: its summary, the timeline of its upgrade, analysis, health checks and pods.
pub fn detail(d: &Detail) -> String {
    let r = &d.row;
    let mut body = String::with_capacity(4096);
    let _ = write!(
        body,
        "<nav aria-label=\"Breadcrumb\"><a href=\"/\">All rollouts</a> › {ns}</nav>\n<div id=\"live\">\n\
         <h1>{name} <span class=\"kind\">{kind}</span></h1>\n<section aria-labelledby=\"summary\">\
         <h2 id=\"summary\">Summary</h2>\n<dl class=\"summary\">\
         <dt>Phase</dt><dd id=\"phase\">{phase}</dd>\
         <dt>Current version</dt><dd id=\"current\">{cur} <code>{cur_rev}</code></dd>\
         <dt>Target version</dt><dd id=\"target\">{tgt} <code>{tgt_rev}</code></dd>\
         <dt>Strategy</dt><dd>{strategy}</dd>",
        ns = escape(&r.namespace),
        name = escape(&r.name),
        kind = r.kind.label(),
        phase = phase_badge(&r.phase, r.tone),
        cur = opt(&r.current_version),
        cur_rev = opt(&r.current_revision),
        tgt = opt(&r.target_version),
        tgt_rev = opt(&r.target_revision),
        strategy = escape(&r.strategy),
    );
    if let Some(p) = &r.progress {
        term(&mut body, "Progress", "progress", &progress_bar(p));
    }
    if let Some(m) = &d.message {
        term(&mut body, "Message", "message", &escape(m));
    }
    if let Some(c) = &d.commit {
        let prs = d
            .pull_requests
            .as_ref()
            .map(|p| format!(" · {}", link(p)))
            .unwrap_or_default();
        term(&mut body, "Commit", "commit", &format!("{}{prs}", link(c)));
    }
    if let Some(j) = &d.migration_job {
        term(
            &mut body,
            "Migration Job",
            "migration",
            &format!("<code>{}</code>", escape(j)),
        );
    }
    body.push_str("</dl>\n");
    if let Some(f) = &r.failure {
        let _ = writeln!(
            body,
            "<p class=\"failure\" id=\"failure\" role=\"alert\"><strong>Failed:</strong> {}</p>",
            escape(f)
        );
    }
    for w in &r.waiting {
        let _ = writeln!(body, "<p class=\"waiting\">{}</p>", escape(w));
    }
    if let Some(rb) = &d.rollback {
        let _ = writeln!(
            body,
            "<p class=\"rollback\"><strong>Rollback:</strong> {}</p>",
            link(rb)
        );
    }
    body.push_str("</section>\n");

    body.push_str("<section aria-labelledby=\"timeline\"><h2 id=\"timeline\">Timeline</h2>\n");
    if d.timeline.is_empty() {
        body.push_str("<p class=\"empty\">No upgrade recorded yet.</p>\n");
    } else {
        body.push_str(
            "<div class=\"table-wrap\"><table class=\"timeline\"><caption>Transitions of the current or last upgrade, oldest first</caption>\
             <thead><tr><th scope=\"col\">Time</th><th scope=\"col\">Phase</th><th scope=\"col\">Step</th>\
             <th scope=\"col\">What happened</th></tr></thead><tbody>\n",
        );
        for t in &d.timeline {
            let _ = writeln!(
                body,
                "<tr class=\"{tone}\"><td data-label=\"Time\"><time>{time}</time></td><td data-label=\"Phase\">{phase}</td>\
                 <td data-label=\"Step\">{step}</td><td data-label=\"What happened\">{msg}</td></tr>",
                tone = t.tone.class(),
                time = escape(&t.time),
                phase = phase_badge(&t.phase, t.tone),
                step = opt(&t.step),
                msg = escape(&t.message),
            );
        }
        body.push_str("</tbody></table></div>\n");
    }
    body.push_str("</section>\n");

    if let Some(n) = &d.note {
        let _ = writeln!(
            body,
            "<section aria-labelledby=\"note\"><h2 id=\"note\">Note on the commit</h2>\
             <p>What <code>git log --notes=bosun</code> shows on it:</p><pre class=\"note\">{}</pre></section>",
            escape(n)
        );
    }
    if !d.analysis.is_empty() || !d.health.is_empty() {
        body.push_str(
            "<section aria-labelledby=\"checks\"><h2 id=\"checks\">Health and analysis</h2>\n",
        );
        if !d.health.is_empty() {
            body.push_str("<ul class=\"health\">");
            for h in &d.health {
                let _ = write!(body, "<li>{}</li>", escape(h));
            }
            body.push_str("</ul>\n");
        }
        if !d.analysis.is_empty() {
            body.push_str(
                "<div class=\"table-wrap\"><table><caption>Metric analysis</caption><thead><tr>\
                 <th scope=\"col\">Scope</th><th scope=\"col\">Metric</th><th scope=\"col\">Result</th>\
                 <th scope=\"col\">Counts</th><th scope=\"col\">Latest values</th></tr></thead><tbody>\n",
            );
            for a in &d.analysis {
                let _ = writeln!(
                    body,
                    "<tr><td data-label=\"Scope\">{}</td><td data-label=\"Metric\">{}</td><td data-label=\"Result\">{}{}</td>\
                     <td data-label=\"Counts\">{}</td><td data-label=\"Latest values\">{}</td></tr>",
                    escape(&a.scope),
                    escape(&a.metric),
                    phase_badge(&a.phase, a.tone),
                    a.message
                        .as_deref()
                        .map(|m| format!("<br>{}", escape(m)))
                        .unwrap_or_default(),
                    escape(&a.counts),
                    escape(&a.values.join(", ")),
                );
            }
            body.push_str("</tbody></table></div>\n");
        }
        body.push_str("</section>\n");
    }

    body.push_str("<section aria-labelledby=\"pods\"><h2 id=\"pods\">Pods by side</h2>\n");
    if d.pods.is_empty() {
        body.push_str("<p class=\"empty\">No pods.</p>\n");
    } else {
        body.push_str(
            "<div class=\"table-wrap\"><table class=\"pods\"><caption>Pods</caption><thead><tr>\
             <th scope=\"col\">Side</th><th scope=\"col\">Pod</th><th scope=\"col\">Phase</th>\
             <th scope=\"col\">Ready</th><th scope=\"col\">Version</th></tr></thead><tbody>\n",
        );
        for p in &d.pods {
            let _ = writeln!(
                body,
                "<tr><td data-label=\"Side\">{}</td><td data-label=\"Pod\">{}</td><td data-label=\"Phase\">{}</td>\
                 <td data-label=\"Ready\">{}</td><td data-label=\"Version\">{}</td></tr>",
                escape(&p.side),
                escape(&p.name),
                escape(&p.phase),
                if p.ready { "yes" } else { "no" },
                escape(&p.version),
            );
        }
        body.push_str("</tbody></table></div>\n");
    }
    body.push_str("</section>\n</div>\n");
    let key = format!("{}/{}/{}", r.kind.segment(), r.namespace, r.name);
    page(&format!("{}/{}", r.namespace, r.name), &key, &body)
}

/// The page of an app that is not (or no longer) in the cluster.
pub fn not_found(what: &str) -> String {
    page(
        "Not found",
        "*",
        &format!(
            "<h1>Not found</h1><p>{} is not in the cluster (or not watched by this Bosun).</p>\
             <p><a href=\"/\">All rollouts</a></p>",
            escape(what)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::super::view::{Filter, Kind, Overview, Row, Tone};
    use super::*;

    fn row(name: &str, failure: Option<&str>) -> Row {
        Row {
            kind: Kind::App,
            namespace: "prod".into(),
            name: name.into(),
            phase: "Failed".into(),
            tone: Tone::Failed,
            current_version: Some("1.0.0".into()),
            target_version: Some("<b>2</b>".into()),
            current_revision: None,
            target_revision: None,
            commit: None,
            strategy: "Rolling".into(),
            progress: None,
            waiting: vec![],
            failure: failure.map(String::from),
        }
    }

    #[test]
    fn text_from_the_cluster_cannot_inject_html() {
        let o = Overview {
            rows: vec![row(
                "shop\"><script>alert(1)</script>",
                Some("<img src=x onerror=alert(1)>"),
            )],
            total: 1,
            namespaces: vec!["prod".into()],
            phases: vec!["Failed".into()],
            filter: Filter::default(),
        };
        let html = overview(&o);
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(!html.contains("<b>2"), "{html}");
        assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
        assert!(
            html.contains("shop%22%3E%3Cscript%3E"),
            "the link's path is encoded"
        );
    }

    #[test]
    fn a_failure_is_shown_in_red_with_its_reason() {
        let o = Overview {
            rows: vec![row("shop", Some("pods not ready within 20 s"))],
            total: 1,
            namespaces: vec![],
            phases: vec![],
            filter: Filter::default(),
        };
        let html = overview(&o);
        assert!(html.contains(
            "<p class=\"failure\"><strong>Failed:</strong> pods not ready within 20 s</p>"
        ));
        assert!(html.contains("<tr class=\"failed\""));
    }

    #[test]
    fn only_http_links_are_made_links() {
        let l = Link {
            text: "x".into(),
            href: Some("javascript:alert(1)".into()),
        };
        assert_eq!(link(&l), "<code>x</code>");
        let l = Link {
            text: "abc".into(),
            href: Some("https://git.example.com/a/b/commit/abc?x=\"".into()),
        };
        assert!(link(&l).contains("href=\"https://git.example.com/a/b/commit/abc?x=&quot;\""));
    }

    #[test]
    fn the_filter_remembers_its_choice() {
        let o = Overview {
            rows: vec![],
            total: 3,
            namespaces: vec!["a".into(), "b".into()],
            phases: vec![],
            filter: Filter {
                namespace: "b".into(),
                phase: String::new(),
            },
        };
        let html = overview(&o);
        assert!(html.contains("<option value=\"b\" selected>b</option>"));
        assert!(html.contains("<label for=\"namespace\">Namespace</label>"));
        assert!(html.contains("No application matches."));
    }
}
