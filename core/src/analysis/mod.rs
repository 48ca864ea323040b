//! Metric analysis (issue [I]), its pure part: the conditions a measurement is judged by
//! ([`expr`]), the queries' placeholders ([`render`]), and how a run of measurements becomes a
//! verdict ([`verdict`]). The executor queries Prometheus when a measurement is due and passes the
//! values in; what a measurement found is kept in status, so a restart neither repeats nor forgets
//! one.
//!
//! A measurement is **successful** when its `successCondition` holds (or, with only a
//! `failureCondition`, when that does not), **failed** when its `failureCondition` holds (or its
//! `successCondition` does not), and **inconclusive** when the condition cannot be decided: an empty
//! result, a missing series, `NaN`, or Prometheus unreachable or answering an error. Inconclusive is
//! never a pass: the analysis holds, and fails once there are more inconclusive measurements than
//! `inconclusiveLimit`.

pub mod expr;

use expr::Condition;

/// What one measurement found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Successful,
    Failed,
    /// The condition could not be decided on the result.
    Inconclusive,
    /// No result: Prometheus unreachable, or it answered an error (the text says which).
    Error(String),
}

/// Judges one result (or the error instead of one) by the metric's conditions.
pub fn judge(
    success: Option<&Condition>,
    failure: Option<&Condition>,
    result: Result<&[f64], &str>,
) -> Outcome {
    let values = match result {
        Ok(v) => v,
        Err(e) => return Outcome::Error(e.to_string()),
    };
    if let Some(f) = failure {
        match f.eval(values) {
            Some(true) => return Outcome::Failed,
            None => return Outcome::Inconclusive,
            Some(false) => {}
        }
    }
    match success.map(|s| s.eval(values)) {
        Some(Some(true)) | None => Outcome::Successful,
        Some(Some(false)) => Outcome::Failed,
        Some(None) => Outcome::Inconclusive,
    }
}

/// How many measurements a metric takes and tolerates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Measurements that make a verdict; `None`: measure for as long as the step lasts.
    pub count: Option<u32>,
    /// Failed measurements tolerated (more fail the analysis). Default 0.
    pub failure_limit: u32,
    /// Inconclusive measurements tolerated (more fail the analysis). Default 3.
    pub inconclusive_limit: u32,
}

/// The default [`Limits::inconclusive_limit`]: a few blips of Prometheus are waited out, a
/// Prometheus that stays away fails the analysis.
pub const DEFAULT_INCONCLUSIVE_LIMIT: u32 = 3;

/// Where the measurements of a metric stand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// More measurements are due.
    Running,
    /// `count` measurements, within the limits.
    Passed,
    /// Over a limit: why, in words.
    Failed(String),
}

/// What a run of measurements found so far: the counts (status keeps them; it keeps only the
/// latest measurements themselves) and the last error.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub taken: u32,
    pub failed: u32,
    /// Inconclusive measurements and errors.
    pub inconclusive: u32,
    pub last_error: Option<String>,
}

impl Tally {
    /// The tally of `outcomes`, oldest first.
    pub fn of(outcomes: &[Outcome]) -> Tally {
        let mut t = Tally::default();
        for o in outcomes {
            t.add(o);
        }
        t
    }

    pub fn add(&mut self, outcome: &Outcome) {
        self.taken += 1;
        match outcome {
            Outcome::Successful => {}
            Outcome::Failed => self.failed += 1,
            Outcome::Inconclusive => self.inconclusive += 1,
            Outcome::Error(e) => {
                self.inconclusive += 1;
                self.last_error = Some(e.clone());
            }
        }
    }
}

/// The verdict of a run's `tally` under `limits`.
pub fn verdict(tally: &Tally, limits: Limits) -> Verdict {
    if tally.failed > limits.failure_limit {
        return Verdict::Failed(format!(
            "{} failed measurement(s), more than the {} allowed",
            tally.failed, limits.failure_limit
        ));
    }
    if tally.inconclusive > limits.inconclusive_limit {
        let why = tally
            .last_error
            .as_ref()
            .map_or_else(String::new, |e| format!(" (last: {e})"));
        return Verdict::Failed(format!(
            "{} inconclusive measurement(s), more than the {} allowed{why}",
            tally.inconclusive, limits.inconclusive_limit
        ));
    }
    // Inconclusive measurements do not count toward `count`: they are waited out (up to their
    // limit), never taken for a pass.
    match limits.count {
        Some(n) if tally.taken - tally.inconclusive >= n => Verdict::Passed,
        _ => Verdict::Running,
    }
}

/// A result as messages say it: `0.083`, `[0.2, 0.01]`, `no data`.
pub fn show_values(values: &[f64]) -> String {
    fn one(v: f64) -> String {
        if v != 0.0 && v.abs() < 0.001 {
            format!("{v:.2e}")
        } else {
            format!("{}", (v * 1000.0).round() / 1000.0)
        }
    }
    match values {
        [] => "no data".into(),
        [v] => one(*v),
        many => format!(
            "[{}]",
            many.iter().map(|v| one(*v)).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// What a query's placeholders stand for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vars<'a> {
    pub app: &'a str,
    pub namespace: &'a str,
    pub version: &'a str,
    pub revision: &'a str,
    /// `stable`, `canary` or `preview`.
    pub role: &'a str,
}

/// The placeholders a query may use.
pub const PLACEHOLDERS: [&str; 5] = ["app", "namespace", "version", "revision", "role"];

/// The query with each `{{placeholder}}` replaced, each value escaped for a PromQL string literal.
///
/// # Errors
/// An unknown placeholder, or an unclosed `{{`.
pub fn render(query: &str, vars: &Vars<'_>) -> Result<String, String> {
    let mut out = String::with_capacity(query.len());
    let mut rest = query;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| format!("an unclosed `{{{{` at {:?}", truncate(&rest[start..])))?;
        let name = after[..end].trim();
        let value = match name {
            "app" => vars.app,
            "namespace" => vars.namespace,
            "version" => vars.version,
            "revision" => vars.revision,
            "role" => vars.role,
            other => {
                return Err(format!(
                    "unknown placeholder {{{{{other}}}}}: use one of {}",
                    PLACEHOLDERS
                        .iter()
                        .map(|p| format!("{{{{{p}}}}}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        };
        out.push_str(&escape(value));
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Checks a query's placeholders without values (`bosun validate`).
///
/// # Errors
/// As [`render`].
pub fn check_query(query: &str) -> Result<(), String> {
    if query.trim().is_empty() {
        return Err("the query is empty".into());
    }
    let vars = Vars {
        app: "",
        namespace: "",
        version: "",
        revision: "",
        role: "",
    };
    render(query, &vars).map(|_| ())
}

/// A value inside a PromQL double-quoted string: backslashes and quotes escaped, no line breaks.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' | '\r' => {}
            c => out.push(c),
        }
    }
    out
}

fn truncate(s: &str) -> String {
    s.chars().take(30).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (successCondition, failureCondition, the result or the error, what the measurement found)
    type Case<'a> = (
        Option<&'a Condition>,
        Option<&'a Condition>,
        Result<&'a [f64], &'a str>,
        Outcome,
    );

    fn c(text: &str) -> Condition {
        Condition::parse(text).expect("a condition")
    }

    #[test]
    fn a_measurement_is_judged_by_its_conditions_and_never_passes_undecided() {
        let (ok, bad) = (c("result < 0.01"), c("result >= 0.05"));
        let cases: &[Case<'_>] = &[
            (Some(&ok), None, Ok(&[0.002]), Outcome::Successful),
            (Some(&ok), None, Ok(&[0.083]), Outcome::Failed),
            (Some(&ok), None, Ok(&[]), Outcome::Inconclusive),
            (None, Some(&bad), Ok(&[0.02]), Outcome::Successful),
            (None, Some(&bad), Ok(&[0.2]), Outcome::Failed),
            (None, Some(&bad), Ok(&[f64::NAN]), Outcome::Inconclusive),
            // Between the two: not failed, not a success.
            (Some(&ok), Some(&bad), Ok(&[0.02]), Outcome::Failed),
            (Some(&ok), Some(&bad), Ok(&[0.2]), Outcome::Failed),
            (
                Some(&ok),
                None,
                Err("connection refused"),
                Outcome::Error("connection refused".into()),
            ),
        ];
        for (success, failure, result, want) in cases {
            assert_eq!(judge(*success, *failure, *result), *want, "{result:?}");
        }
    }

    #[test]
    fn limits_make_the_verdict() {
        use Outcome::*;
        let limits = Limits {
            count: Some(3),
            failure_limit: 0,
            inconclusive_limit: 1,
        };
        let verdict = |o: &[Outcome], l| verdict(&Tally::of(o), l);
        assert_eq!(verdict(&[Successful, Successful], limits), Verdict::Running);
        assert_eq!(
            verdict(&[Successful, Successful, Successful], limits),
            Verdict::Passed
        );
        assert!(matches!(
            verdict(&[Successful, Failed], limits),
            Verdict::Failed(why) if why.contains("1 failed measurement(s), more than the 0 allowed")
        ));
        // One blip is waited out, and does not count toward the three; a Prometheus that stays
        // away fails it, and says why.
        assert_eq!(
            verdict(
                &[Error("connection refused".into()), Successful, Successful],
                limits
            ),
            Verdict::Running
        );
        assert_eq!(
            verdict(&[Successful, Inconclusive, Successful, Successful], limits),
            Verdict::Passed
        );
        assert!(matches!(
            verdict(&[Error("x".into()), Inconclusive, Error("connection refused".into())], limits),
            Verdict::Failed(why) if why.contains("(last: connection refused)")
        ));
        // Without a count, it measures for as long as the step lasts.
        let open = Limits {
            count: None,
            ..limits
        };
        assert_eq!(verdict(&vec![Successful; 50], open), Verdict::Running);
    }

    #[test]
    fn values_read_as_a_person_writes_them() {
        assert_eq!(show_values(&[0.083_333_3]), "0.083");
        assert_eq!(show_values(&[0.2, 0.01]), "[0.2, 0.01]");
        assert_eq!(show_values(&[0.000_12]), "1.20e-4");
        assert_eq!(show_values(&[0.0]), "0");
        assert_eq!(show_values(&[]), "no data");
    }

    #[test]
    fn placeholders_are_replaced_and_escaped_and_unknown_ones_refused() {
        let vars = Vars {
            app: "checkout",
            namespace: "shop",
            version: "1.2.0",
            revision: "5d41402abc",
            role: "canary",
        };
        let q = r#"sum(rate(http_requests_total{app="{{app}}",namespace="{{ namespace }}",role="{{role}}",code=~"5.."}[1m])) / sum(rate(http_requests_total{app="{{app}}"}[1m]))"#;
        assert_eq!(
            render(q, &vars).expect("rendered"),
            r#"sum(rate(http_requests_total{app="checkout",namespace="shop",role="canary",code=~"5.."}[1m])) / sum(rate(http_requests_total{app="checkout"}[1m]))"#
        );
        let tricky = Vars {
            version: "1\"} or vector(1) #",
            ..vars
        };
        assert_eq!(
            render("up{version=\"{{version}}\"}", &tricky).expect("rendered"),
            "up{version=\"1\\\"} or vector(1) #\"}",
            "a value cannot end the string it is put in"
        );
        let e = check_query("up{pod=\"{{pod}}\"}").expect_err("unknown");
        assert!(
            e.contains("unknown placeholder {{pod}}") && e.contains("{{app}}"),
            "{e}"
        );
        let e = check_query("up{app=\"{{app\"}").expect_err("unclosed");
        assert!(e.contains("unclosed"), "{e}");
        assert!(check_query(" ").is_err());
    }
}
