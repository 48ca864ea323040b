//! Upgrade windows (`spec.upgradeWindows`, [`UpgradeWindow`]) evaluated at an instant, as Argo CD's
//! sync windows: whether an upgrade may start (or a canary step / the blue-green switch may go) now,
//! why not, and when it may. Pure: the caller passes the clock.
//!
//! # The rules
//!
//! - A window opens at each time its five-field cron `schedule` fires, read on the wall clock of its
//!   `timeZone` (an IANA name, `UTC` when unset), and stays open for `duration`: it is active at `t`
//!   when its latest opening at or before `t` plus its duration is after `t`. It is open from its
//!   opening instant (inclusive) to its end (exclusive), so `0 22 * * 1-5` for `4h` spans midnight
//!   and a Friday's window still holds early on Saturday. Openings closer together than the
//!   duration make one long window.
//! - Only the windows that gate the [`Moment`] count: all of them for the start of an upgrade, only
//!   `gate: steps` ones for a step.
//! - An active deny window closes the gate; otherwise, when some allow window counts, the gate is open
//!   only inside one of them; with no allow window counting, it is open.
//! - A window that cannot be read (any [`problems`]) closes the gate, with no opening known: a
//!   change freeze that cannot be read never lets an upgrade through. `bosun validate` and the
//!   engine's validation report the same problems before it comes to that.
//!
//! # Durations
//!
//! Jiff's friendly format (`4h`, `30m`, `1h30m`, `90s`, `2d`, `1w`, also `2 days`; ISO 8601 `PT4H`
//! too). A duration is absolute time: `d` is 24 hours and `w` 7 × 24 hours, whatever the clock
//! does meanwhile; months and years (no fixed length) are refused, as are zero, negative durations
//! and more than 366 days.
//!
//! # Daylight saving time
//!
//! The schedule is read on the local wall clock by croner, whose rules on the two days a year the
//! clock jumps are these (tested below with Europe/Berlin, 2026):
//!
//! - A *fixed-time* schedule (a single minute and a single hour, e.g. `30 2 * * *`):
//!   - on the spring-forward day, when its time does not exist (02:30 on 29 March: the clock goes
//!     from 02:00 CET to 03:00 CEST), the window opens at the first instant after the gap,
//!     03:00 CEST, and lasts its full duration from there;
//!   - on the fall-back day, when its time happens twice (02:30 on 25 October, first CEST, then an
//!     hour later CET), the window opens once, at the first (02:30 CEST), and not again at the
//!     second: a `1h` window then ends at 02:30 CET, wall clock.
//! - Any other schedule (a range, list or step in the minute or hour, e.g. `30 1-3 * * *`): wall
//!   clock times inside the spring-forward gap are skipped (no 02:30 opening that day), and times
//!   that happen twice open the window twice (02:30 CEST and 02:30 CET).
//! - The duration is absolute time, so a window across a jump lasts its duration in real time, not
//!   on the wall clock: `0 1 * * *` for `2h` ends at 02:00 CET on the fall-back night (two real
//!   hours after 01:00 CEST) and at 04:00 CEST on the spring-forward night.
//!
//! # When it opens
//!
//! The next opening is found by evaluating the rules at each instant at which the state can become
//! open: the next openings of allow windows and the ends of deny windows, in time order (jumping
//! past the end of an active deny window), up to 366 days ahead and 10 000 instants.

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Span, SpanRelativeTo, Timestamp};

use crate::model::{UpgradeWindow, WindowGate, WindowKind};

/// What is being gated: the start of an upgrade, or a canary step / blue-green switch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Moment {
    /// The start of an upgrade: every window counts.
    Start,
    /// A canary step or the blue-green switch: only `gate: steps` windows count.
    Step,
}

/// Whether an upgrade may start (or, for [`Moment::Step`], a step may go) at an instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    Open,
    Closed {
        /// Why, for a status message: e.g. "outside its upgrade windows" or "a deny window
        /// (0 0 24 12 *, 2d, Europe/Berlin) is open until Sat 26 Dec 00:00 CET".
        reason: String,
        /// When it opens next (None: not within the search horizon, or a window is invalid).
        opens_at: Option<Timestamp>,
        /// How people read that time: in the time zone of the window that opens it (or UTC), e.g.
        /// "Mon 22:00 CET"; with the date when more than 6 days away: "Mon 7 Dec 22:00 CET". ""
        /// when `opens_at` is None.
        opens: String,
    },
}

/// How far ahead [`state`] looks for the next opening, and the longest duration a window may have.
const HORIZON: SignedDuration = SignedDuration::from_hours(366 * 24);
/// The most instants [`state`] evaluates looking for the next opening (and the most openings it
/// follows to find where a chain of overlapping deny openings ends).
const MAX_CANDIDATES: usize = 10_000;
/// Beyond this, the `opens` label carries the date.
const DATE_AFTER: SignedDuration = SignedDuration::from_hours(6 * 24);
/// What [`recheck_secs`] says when no opening is known (or the gate is open).
const RECHECK_SECS: u64 = 300;

const SCHEDULE_HINT: &str =
    "write five fields: minute hour day-of-month month day-of-week, e.g. \"0 22 * * 1-5\"";
const DURATION_HINT: &str = "write e.g. 4h, 30m or 1h30m";

/// The fields of a schedule, with the values each takes (for messages).
const CRON_FIELDS: [(&str, &str); 5] = [
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day-of-month", "1-31"),
    ("month", "1-12 or JAN-DEC"),
    ("day-of-week", "0-7 or SUN-SAT"),
];

/// The problems of one window, as (field name, reason): field is "schedule", "duration" or
/// "timeZone". The reason says what is wrong and what is accepted, and quotes the bad value. Empty
/// when the window is valid.
pub fn problems(w: &UpgradeWindow) -> Vec<(&'static str, String)> {
    read(w).err().unwrap_or_default()
}

/// Evaluates `windows` for `moment` at `now` (see the module documentation for the rules).
pub fn state(windows: &[UpgradeWindow], moment: Moment, now: Timestamp) -> State {
    let mut counting = Vec::new();
    for (index, w) in windows.iter().enumerate() {
        if moment == Moment::Step && w.gate != WindowGate::Steps {
            continue;
        }
        match read(w) {
            Ok(window) => counting.push(window),
            Err(problems) => {
                let reason = problems
                    .into_iter()
                    .next()
                    .map_or_else(String::new, |(_, reason)| reason);
                return State::Closed {
                    reason: format!("upgradeWindows[{index}] is invalid: {reason}"),
                    opens_at: None,
                    opens: String::new(),
                };
            }
        }
    }
    let reason = match verdict(&counting, now) {
        Verdict::Open => return State::Open,
        Verdict::Outside => "outside its upgrade windows".to_string(),
        Verdict::Denied(active) => deny_reason(&counting, &active, now),
    };
    match next_opening(&counting, now) {
        Some((at, tz)) => State::Closed {
            reason,
            opens_at: Some(at),
            opens: label(at, tz, now.duration_until(at) > DATE_AFTER),
        },
        None => State::Closed {
            reason,
            opens_at: None,
            opens: String::new(),
        },
    }
}

/// Why an upgrade waits at `windows` for `moment` at `now`, as status messages say it ("waits for
/// window: opens Mon 22:00 CET (…)"), and when to look again; `None` when the gate is open.
pub fn waiting(windows: &[UpgradeWindow], moment: Moment, now: Timestamp) -> Option<(String, u64)> {
    if windows.is_empty() {
        return None;
    }
    let st = state(windows, moment, now);
    let recheck = recheck_secs(&st, now);
    match st {
        State::Open => None,
        State::Closed { reason, opens, .. } => {
            let opens = if opens.is_empty() {
                "no opening found".to_string()
            } else {
                format!("opens {opens}")
            };
            Some((format!("waits for window: {opens} ({reason})"), recheck))
        }
    }
}

/// Seconds from `now` to `opens_at`, rounded up, at least 1; when no opening is known (or the gate
/// is open), 300: a cap the caller uses to look again.
pub fn recheck_secs(state: &State, now: Timestamp) -> u64 {
    match state {
        State::Closed {
            opens_at: Some(at), ..
        } => {
            let until = now.duration_until(*at);
            if !until.is_positive() {
                return 1;
            }
            let secs = u64::try_from(until.as_secs()).unwrap_or(u64::MAX);
            let secs = if until.subsec_nanos() > 0 {
                secs.saturating_add(1)
            } else {
                secs
            };
            secs.max(1)
        }
        _ => RECHECK_SECS,
    }
}

/// A window that could be read.
struct Window<'a> {
    spec: &'a UpgradeWindow,
    cron: Cron,
    duration: SignedDuration,
    tz: TimeZone,
}

/// Reads a window, or says everything wrong with it.
fn read(w: &UpgradeWindow) -> Result<Window<'_>, Vec<(&'static str, String)>> {
    let cron = read_schedule(&w.schedule).map_err(|reason| ("schedule", reason));
    let duration = read_duration(&w.duration).map_err(|reason| ("duration", reason));
    let tz = read_time_zone(w.time_zone.as_deref()).map_err(|reason| ("timeZone", reason));
    match (cron, duration, tz) {
        (Ok(cron), Ok(duration), Ok(tz)) => Ok(Window {
            spec: w,
            cron,
            duration,
            tz,
        }),
        (cron, duration, tz) => Err([cron.err(), duration.err(), tz.err()]
            .into_iter()
            .flatten()
            .collect()),
    }
}

fn parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
}

fn read_schedule(schedule: &str) -> Result<Cron, String> {
    let cron = parser().parse(schedule).map_err(|error| {
        format!(
            "{schedule:?} is not a cron schedule: {}; {SCHEDULE_HINT}",
            schedule_error(schedule, &error)
        )
    })?;
    // A schedule that parses may still never fire (31 February). Without a year field, one that
    // fires at all fires within a few decades of any instant.
    let epoch = Timestamp::UNIX_EPOCH.to_zoned(TimeZone::UTC);
    if cron.find_next_occurrence(&epoch, true).is_err() {
        return Err(format!(
            "{schedule:?} never fires: no date matches it (e.g. day 31 in a month of 30 days)"
        ));
    }
    Ok(cron)
}

/// What is wrong with a schedule croner refused: the field at fault when one is, found by letting
/// croner parse each field alone.
fn schedule_error(schedule: &str, error: &croner::errors::CronError) -> String {
    use croner::errors::CronError;
    let fields: Vec<&str> = schedule.split_whitespace().collect();
    match fields.len() {
        0 => return "it is empty".to_string(),
        5 => {}
        1 => return "it has 1 field".to_string(),
        n => return format!("it has {n} fields"),
    }
    for (at, (value, (name, range))) in fields.iter().zip(CRON_FIELDS).enumerate() {
        let mut alone = ["*"; 5];
        alone[at] = value;
        match parser().parse(&alone.join(" ")) {
            Ok(_) => {}
            Err(CronError::ComponentError(message)) if message.contains("out of bounds") => {
                return format!("{name} {value} is out of range ({range})");
            }
            Err(CronError::ComponentError(message)) => {
                let message = message.trim_end_matches('.');
                return format!("{name} {value:?} is not valid ({range}): {message}");
            }
            Err(_) => return format!("{name} {value:?} is not valid ({range})"),
        }
    }
    error.to_string()
}

fn read_duration(duration: &str) -> Result<SignedDuration, String> {
    let span: Span = duration
        .parse()
        .map_err(|_| format!("{duration:?} is not a duration: {DURATION_HINT}"))?;
    let length = span
        .to_duration(SpanRelativeTo::days_are_24_hours())
        .map_err(|_| {
            format!(
                "{duration:?} is not a duration of fixed length: months and years vary; write \
                 days or weeks instead, e.g. 30d or 2w"
            )
        })?;
    if !length.is_positive() {
        return Err(format!(
            "{duration:?} is not a duration longer than zero: {DURATION_HINT}"
        ));
    }
    if length > HORIZON {
        return Err(format!(
            "{duration:?} is longer than 366 days, the longest window: {DURATION_HINT}"
        ));
    }
    Ok(length)
}

fn read_time_zone(name: Option<&str>) -> Result<TimeZone, String> {
    match name {
        None => Ok(TimeZone::UTC),
        Some(name) => TimeZone::get(name).map_err(|_| {
            format!("{name:?} is not an IANA time zone (e.g. Europe/Berlin, America/New_York, UTC)")
        }),
    }
}

impl Window<'_> {
    /// The opening active at `t` and its end, if the window is active at `t`.
    fn active_at(&self, t: Timestamp) -> Option<(Timestamp, Timestamp)> {
        let opening = self
            .cron
            .find_previous_occurrence(&t.to_zoned(self.tz.clone()), true)
            .ok()?
            .timestamp();
        let end = plus(opening, self.duration);
        (end > t).then_some((opening, end))
    }

    /// The first opening after `t` (or at it, when `inclusive`).
    fn next_opening(&self, t: Timestamp, inclusive: bool) -> Option<Timestamp> {
        self.cron
            .find_next_occurrence(&t.to_zoned(self.tz.clone()), inclusive)
            .ok()
            .map(|z| z.timestamp())
    }

    /// The first instant after `t` (or at it, when `inclusive`) at which this window may let the gate
    /// open: an allow window's opening, a deny window's end.
    fn next_event(&self, t: Timestamp, inclusive: bool) -> Option<Timestamp> {
        match self.spec.kind {
            WindowKind::Allow => self.next_opening(t, inclusive),
            WindowKind::Deny => {
                // The ends at or after `t` are those of the openings at or after `t - duration`.
                let opening = self.next_opening(minus(t, self.duration), inclusive)?;
                Some(plus(opening, self.duration))
            }
        }
    }

    /// Where the window active from `opening` to `end` closes, when later openings overlap it:
    /// `None` when that is not found within the horizon from `now`.
    fn closes(
        &self,
        mut opening: Timestamp,
        mut end: Timestamp,
        now: Timestamp,
    ) -> Option<Timestamp> {
        let limit = plus(now, HORIZON);
        for _ in 0..MAX_CANDIDATES {
            if end > limit {
                return None;
            }
            match self.next_opening(opening, false) {
                Some(next) if next <= end => {
                    end = end.max(plus(next, self.duration));
                    opening = next;
                }
                _ => return Some(end),
            }
        }
        None
    }

    /// How the window reads in a message: `(0 0 24 12 *, 2d, Europe/Berlin)`.
    fn describe(&self) -> String {
        let tz = self.spec.time_zone.as_deref().unwrap_or("UTC");
        format!("({}, {}, {tz})", self.spec.schedule, self.spec.duration)
    }
}

/// The rules at one instant.
enum Verdict {
    Open,
    /// No deny window is active, but no allow window is either.
    Outside,
    /// The active deny windows: (index in the counting windows, opening, end).
    Denied(Vec<(usize, Timestamp, Timestamp)>),
}

fn verdict(windows: &[Window<'_>], t: Timestamp) -> Verdict {
    let mut denied = Vec::new();
    let mut any_allow = false;
    let mut in_allow = false;
    for (index, w) in windows.iter().enumerate() {
        match w.spec.kind {
            WindowKind::Deny => {
                if let Some((opening, end)) = w.active_at(t) {
                    denied.push((index, opening, end));
                }
            }
            WindowKind::Allow => {
                any_allow = true;
                in_allow = in_allow || w.active_at(t).is_some();
            }
        }
    }
    if !denied.is_empty() {
        Verdict::Denied(denied)
    } else if any_allow && !in_allow {
        Verdict::Outside
    } else {
        Verdict::Open
    }
}

/// Why the active deny windows close the gate: the one that closes last.
fn deny_reason(
    windows: &[Window<'_>],
    active: &[(usize, Timestamp, Timestamp)],
    now: Timestamp,
) -> String {
    let closes = active
        .iter()
        .map(|&(index, opening, end)| (index, windows[index].closes(opening, end, now)))
        // `None` (not found in the horizon) closes last.
        .max_by_key(|&(index, closes)| (closes.is_none(), closes, std::cmp::Reverse(index)));
    match closes {
        Some((index, Some(at))) => {
            let w = &windows[index];
            format!(
                "a deny window {} is open until {}",
                w.describe(),
                label(at, &w.tz, true)
            )
        }
        Some((index, None)) => format!("a deny window {} is open", windows[index].describe()),
        None => "a deny window is open".to_string(),
    }
}

/// The first instant after `now` at which the gate is open, with the time zone of the window that
/// opens it.
fn next_opening<'w>(
    windows: &'w [Window<'_>],
    now: Timestamp,
) -> Option<(Timestamp, &'w TimeZone)> {
    let horizon = plus(now, HORIZON);
    let mut next: Vec<Option<Timestamp>> =
        windows.iter().map(|w| w.next_event(now, false)).collect();
    for _ in 0..MAX_CANDIDATES {
        let (index, at) = next
            .iter()
            .enumerate()
            .filter_map(|(index, at)| at.map(|at| (index, at)))
            .min_by_key(|&(index, at)| (at, index))?;
        if at > horizon {
            return None;
        }
        match verdict(windows, at) {
            Verdict::Open => return Some((at, &windows[index].tz)),
            Verdict::Outside => {
                for (w, event) in windows.iter().zip(next.iter_mut()) {
                    if *event == Some(at) {
                        *event = w.next_event(at, false);
                    }
                }
            }
            Verdict::Denied(active) => {
                // Closed until the last of the active deny windows ends: nothing before can open it.
                let until = active.iter().map(|&(_, _, end)| end).max().unwrap_or(at);
                for (w, event) in windows.iter().zip(next.iter_mut()) {
                    if event.is_some_and(|event| event < until) {
                        *event = w.next_event(until, true);
                    }
                }
            }
        }
    }
    None
}

/// `at` as people read it in `tz`: "Mon 22:00 CET", with the date "Mon 7 Dec 22:00 CET".
fn label(at: Timestamp, tz: &TimeZone, with_date: bool) -> String {
    let zoned = at.to_zoned(tz.clone());
    let format = if with_date {
        "%a %-d %b %H:%M %Z"
    } else {
        "%a %H:%M %Z"
    };
    jiff::fmt::strtime::format(format, &zoned).unwrap_or_else(|_| zoned.to_string())
}

fn plus(t: Timestamp, d: SignedDuration) -> Timestamp {
    t.checked_add(d).unwrap_or(Timestamp::MAX)
}

fn minus(t: Timestamp, d: SignedDuration) -> Timestamp {
    t.checked_sub(d).unwrap_or(Timestamp::MIN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::Zoned;

    const BERLIN: &str = "Europe/Berlin";

    fn window(kind: WindowKind, schedule: &str, duration: &str, tz: Option<&str>) -> UpgradeWindow {
        UpgradeWindow {
            kind,
            schedule: schedule.into(),
            duration: duration.into(),
            time_zone: tz.map(Into::into),
            gate: WindowGate::Start,
        }
    }

    fn allow(schedule: &str, duration: &str, tz: &str) -> UpgradeWindow {
        window(WindowKind::Allow, schedule, duration, Some(tz))
    }

    fn deny(schedule: &str, duration: &str, tz: &str) -> UpgradeWindow {
        window(WindowKind::Deny, schedule, duration, Some(tz))
    }

    fn steps(w: UpgradeWindow) -> UpgradeWindow {
        UpgradeWindow {
            gate: WindowGate::Steps,
            ..w
        }
    }

    /// An instant written as people do: `2026-12-01T23:00[Europe/Berlin]` (with the offset where the
    /// wall clock repeats: `2026-10-25T02:30+01:00[Europe/Berlin]`), or in UTC: `2026-12-01T22:00Z`.
    fn at(s: &str) -> Timestamp {
        s.parse::<Zoned>()
            .map(|z| z.timestamp())
            .or_else(|_| s.parse::<Timestamp>())
            .unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    /// What a scenario expects.
    enum Want {
        Open,
        /// Closed, opening at `opens_at` (None: no opening), read as `opens`, for a reason that
        /// contains `reason`.
        Closed {
            opens_at: Option<&'static str>,
            opens: &'static str,
            reason: &'static str,
        },
    }

    fn closed(opens_at: &'static str, opens: &'static str, reason: &'static str) -> Want {
        Want::Closed {
            opens_at: Some(opens_at),
            opens,
            reason,
        }
    }

    const OUTSIDE: &str = "outside its upgrade windows";

    /// Runs scenarios `(what, moment, now, want)` against `windows`.
    fn check(windows: &[UpgradeWindow], scenarios: &[(&str, Moment, &str, Want)]) {
        for (what, moment, now, want) in scenarios {
            let got = state(windows, *moment, at(now));
            match (want, &got) {
                (Want::Open, State::Open) => {}
                (
                    Want::Closed {
                        opens_at,
                        opens,
                        reason,
                    },
                    State::Closed {
                        reason: got_reason,
                        opens_at: got_opens_at,
                        opens: got_opens,
                    },
                ) => {
                    assert_eq!(
                        *got_opens_at,
                        opens_at.map(at),
                        "{what}: opens_at ({got:?})"
                    );
                    assert_eq!(got_opens, opens, "{what}: opens");
                    assert!(
                        got_reason.contains(reason),
                        "{what}: reason {got_reason:?} should contain {reason:?}"
                    );
                }
                (Want::Open, _) => panic!("{what}: should be open, is {got:?}"),
                (Want::Closed { .. }, _) => panic!("{what}: should be closed, is open"),
            }
        }
    }

    use Moment::{Start, Step};

    #[test]
    fn a_weekday_night_window_spans_midnight() {
        // 1 December 2026 is a Tuesday.
        let windows = [allow("0 22 * * 1-5", "4h", BERLIN)];
        check(
            &windows,
            &[
                (
                    "Tue 23:00: inside",
                    Start,
                    "2026-12-01T23:00[Europe/Berlin]",
                    Want::Open,
                ),
                (
                    "Tue 22:00 sharp: the opening instant is inside",
                    Start,
                    "2026-12-01T22:00[Europe/Berlin]",
                    Want::Open,
                ),
                (
                    "Tue 21:59: closed, opens at 22:00",
                    Start,
                    "2026-12-01T21:59[Europe/Berlin]",
                    closed("2026-12-01T22:00[Europe/Berlin]", "Tue 22:00 CET", OUTSIDE),
                ),
                (
                    "Wed 01:59: still Tuesday's window, across midnight",
                    Start,
                    "2026-12-02T01:59[Europe/Berlin]",
                    Want::Open,
                ),
                (
                    "Wed 02:00: the end is outside, opens Wed 22:00",
                    Start,
                    "2026-12-02T02:00[Europe/Berlin]",
                    closed("2026-12-02T22:00[Europe/Berlin]", "Wed 22:00 CET", OUTSIDE),
                ),
                (
                    "Sat 01:00: Friday's window still holds",
                    Start,
                    "2026-12-05T01:00[Europe/Berlin]",
                    Want::Open,
                ),
                (
                    "Sat 23:00: no window on weekends, opens Monday",
                    Start,
                    "2026-12-05T23:00[Europe/Berlin]",
                    closed("2026-12-07T22:00[Europe/Berlin]", "Mon 22:00 CET", OUTSIDE),
                ),
            ],
        );
    }

    #[test]
    fn a_window_without_time_zone_is_read_in_utc() {
        let windows = [window(WindowKind::Allow, "0 22 * * 1-5", "4h", None)];
        check(
            &windows,
            &[
                (
                    "Tue 22:30 UTC: inside",
                    Start,
                    "2026-12-01T22:30Z",
                    Want::Open,
                ),
                (
                    "Tue 21:30 UTC: opens at 22:00 UTC",
                    Start,
                    "2026-12-01T21:30Z",
                    closed("2026-12-01T22:00Z", "Tue 22:00 UTC", OUTSIDE),
                ),
            ],
        );
    }

    #[test]
    fn a_deny_window_wins_over_an_allow_window() {
        // A Christmas freeze from Thu 24 Dec 00:00 for two days.
        let windows = [
            allow("0 22 * * 1-5", "4h", BERLIN),
            deny("0 0 24 12 *", "2d", BERLIN),
        ];
        let freeze =
            "a deny window (0 0 24 12 *, 2d, Europe/Berlin) is open until Sat 26 Dec 00:00 CET";
        check(
            &windows,
            &[
                (
                    "Tue 22 Dec 23:00: allowed, no freeze",
                    Start,
                    "2026-12-22T23:00[Europe/Berlin]",
                    Want::Open,
                ),
                (
                    // The freeze ends inside Friday's allow window (Fri 22:00 to Sat 02:00).
                    "Thu 24 Dec 23:00: inside both, the freeze wins until it ends",
                    Start,
                    "2026-12-24T23:00[Europe/Berlin]",
                    closed("2026-12-26T00:00[Europe/Berlin]", "Sat 00:00 CET", freeze),
                ),
                (
                    "Fri 25 Dec 12:00: outside the allow window too",
                    Start,
                    "2026-12-25T12:00[Europe/Berlin]",
                    closed("2026-12-26T00:00[Europe/Berlin]", "Sat 00:00 CET", freeze),
                ),
                (
                    "Sat 26 Dec 00:00: the freeze is over, Friday's window still holds",
                    Start,
                    "2026-12-26T00:00[Europe/Berlin]",
                    Want::Open,
                ),
            ],
        );
    }

    #[test]
    fn a_deny_window_alone() {
        let windows = [deny("0 0 24 12 *", "2d", BERLIN)];
        check(
            &windows,
            &[
                (
                    "Wed 23 Dec: before the freeze",
                    Start,
                    "2026-12-23T12:00[Europe/Berlin]",
                    Want::Open,
                ),
                (
                    "Thu 24 Dec 00:00: the freeze begins, opens at its end",
                    Start,
                    "2026-12-24T00:00[Europe/Berlin]",
                    closed(
                        "2026-12-26T00:00[Europe/Berlin]",
                        "Sat 00:00 CET",
                        "a deny window (0 0 24 12 *, 2d, Europe/Berlin) is open until Sat 26 Dec 00:00 CET",
                    ),
                ),
                (
                    "Fri 25 Dec 12:00: inside",
                    Start,
                    "2026-12-25T12:00[Europe/Berlin]",
                    closed(
                        "2026-12-26T00:00[Europe/Berlin]",
                        "Sat 00:00 CET",
                        "is open until Sat 26 Dec 00:00 CET",
                    ),
                ),
                (
                    "Sat 26 Dec 00:00: the end is outside",
                    Start,
                    "2026-12-26T00:00[Europe/Berlin]",
                    Want::Open,
                ),
            ],
        );
    }

    #[test]
    fn an_opening_more_than_six_days_away_carries_its_date() {
        // A freeze from Sat 28 Nov for 9 days, to Mon 7 Dec 00:00; the next allow window is Mon 22:00.
        let windows = [
            allow("0 22 * * 1-5", "4h", BERLIN),
            deny("0 0 28 11 *", "9d", BERLIN),
        ];
        check(
            &windows,
            &[
                (
                    "Mon 30 Nov 23:00: the freeze holds, then the next window is Mon 7 Dec",
                    Start,
                    "2026-11-30T23:00[Europe/Berlin]",
                    closed(
                        "2026-12-07T22:00[Europe/Berlin]",
                        "Mon 7 Dec 22:00 CET",
                        "a deny window (0 0 28 11 *, 9d, Europe/Berlin) is open until Mon 7 Dec 00:00 CET",
                    ),
                ),
                (
                    "Tue 1 Dec 23:00: under 6 days away, no date",
                    Start,
                    "2026-12-01T23:00[Europe/Berlin]",
                    closed(
                        "2026-12-07T22:00[Europe/Berlin]",
                        "Mon 22:00 CET",
                        "is open until Mon 7 Dec 00:00 CET",
                    ),
                ),
            ],
        );
    }

    #[test]
    fn overlapping_deny_openings_make_one_long_freeze() {
        // Every day at 00:00 for 25 hours, on 1 to 3 December only: one freeze to Fri 4 Dec 01:00.
        let windows = [deny("0 0 1-3 12 *", "25h", "UTC")];
        check(
            &windows,
            &[(
                "Tue 1 Dec 12:00: closed until the last opening's end",
                Start,
                "2026-12-01T12:00Z",
                closed(
                    "2026-12-04T01:00Z",
                    "Fri 01:00 UTC",
                    "is open until Fri 4 Dec 01:00 UTC",
                ),
            )],
        );
    }

    #[test]
    fn no_windows_is_open() {
        check(
            &[],
            &[
                ("start", Start, "2026-12-01T12:00Z", Want::Open),
                ("step", Step, "2026-12-01T12:00Z", Want::Open),
            ],
        );
    }

    #[test]
    fn a_step_counts_only_windows_that_gate_steps() {
        // Upgrades start at night; no step goes during office hours on weekdays.
        let windows = [
            allow("0 22 * * *", "4h", "UTC"),
            steps(deny("0 9 * * 1-5", "8h", "UTC")),
        ];
        let office = "a deny window (0 9 * * 1-5, 8h, UTC)";
        check(
            &windows,
            &[
                (
                    "start at Tue 10:00: the office-hours deny gates starts too; after it, the night window",
                    Start,
                    "2026-12-01T10:00Z",
                    closed("2026-12-01T22:00Z", "Tue 22:00 UTC", office),
                ),
                (
                    "step at Tue 10:00: closed until office hours end",
                    Step,
                    "2026-12-01T10:00Z",
                    closed("2026-12-01T17:00Z", "Tue 17:00 UTC", office),
                ),
                (
                    "start at Tue 20:00: outside the night window",
                    Start,
                    "2026-12-01T20:00Z",
                    closed("2026-12-01T22:00Z", "Tue 22:00 UTC", OUTSIDE),
                ),
                (
                    "step at Tue 20:00: the night window gates starts only",
                    Step,
                    "2026-12-01T20:00Z",
                    Want::Open,
                ),
                ("start at Tue 23:00", Start, "2026-12-01T23:00Z", Want::Open),
                ("step at Tue 23:00", Step, "2026-12-01T23:00Z", Want::Open),
            ],
        );
        // An allow window with gate: steps holds steps too.
        let windows = [steps(allow("0 22 * * *", "4h", "UTC"))];
        check(
            &windows,
            &[
                (
                    "step at Tue 20:00: outside the steps window",
                    Step,
                    "2026-12-01T20:00Z",
                    closed("2026-12-01T22:00Z", "Tue 22:00 UTC", OUTSIDE),
                ),
                ("step at Tue 22:30", Step, "2026-12-01T22:30Z", Want::Open),
            ],
        );
    }

    #[test]
    fn spring_forward_a_fixed_time_in_the_gap_opens_at_the_end_of_the_gap() {
        // On Sun 29 March 2026 Berlin's clock goes from 02:00 CET to 03:00 CEST: no 02:30 that day.
        let windows = [allow("30 2 * * *", "1h", BERLIN)];
        check(
            &windows,
            &[
                (
                    "Sat noon: the next opening is Sun 03:00 CEST, the first instant after the gap",
                    Start,
                    "2026-03-28T12:00[Europe/Berlin]",
                    closed(
                        "2026-03-29T03:00+02:00[Europe/Berlin]",
                        "Sun 03:00 CEST",
                        OUTSIDE,
                    ),
                ),
                (
                    "Sun 01:59 CET: just before the gap",
                    Start,
                    "2026-03-29T01:59+01:00[Europe/Berlin]",
                    closed(
                        "2026-03-29T03:00+02:00[Europe/Berlin]",
                        "Sun 03:00 CEST",
                        OUTSIDE,
                    ),
                ),
                (
                    "Sun 03:00 CEST: open",
                    Start,
                    "2026-03-29T03:00+02:00[Europe/Berlin]",
                    Want::Open,
                ),
                (
                    "Sun 03:59 CEST: open for its full hour",
                    Start,
                    "2026-03-29T03:59+02:00[Europe/Berlin]",
                    Want::Open,
                ),
                (
                    "Sun 04:00 CEST: closed, opens Mon 02:30 CEST",
                    Start,
                    "2026-03-29T04:00+02:00[Europe/Berlin]",
                    closed(
                        "2026-03-30T02:30+02:00[Europe/Berlin]",
                        "Mon 02:30 CEST",
                        OUTSIDE,
                    ),
                ),
            ],
        );
    }

    #[test]
    fn fall_back_a_fixed_time_that_happens_twice_opens_once() {
        // On Sun 25 October 2026 Berlin's clock goes from 03:00 CEST back to 02:00 CET: 02:30 twice.
        let windows = [allow("30 2 * * *", "1h", BERLIN)];
        check(
            &windows,
            &[
                (
                    "Sat noon: opens at the first 02:30, CEST",
                    Start,
                    "2026-10-24T12:00[Europe/Berlin]",
                    closed(
                        "2026-10-25T02:30+02:00[Europe/Berlin]",
                        "Sun 02:30 CEST",
                        OUTSIDE,
                    ),
                ),
                (
                    "02:30 CEST: open",
                    Start,
                    "2026-10-25T02:30+02:00[Europe/Berlin]",
                    Want::Open,
                ),
                (
                    "the second 02:29, CET: an hour later, still open",
                    Start,
                    "2026-10-25T02:29+01:00[Europe/Berlin]",
                    Want::Open,
                ),
                (
                    "the second 02:30, CET: an hour is over and it does not open again",
                    Start,
                    "2026-10-25T02:30+01:00[Europe/Berlin]",
                    closed(
                        "2026-10-26T02:30+01:00[Europe/Berlin]",
                        "Mon 02:30 CET",
                        OUTSIDE,
                    ),
                ),
            ],
        );
    }

    #[test]
    fn a_schedule_with_a_range_skips_the_gap_and_repeats_in_the_overlap() {
        // Not a fixed time (hours 1 to 3): croner skips 02:30 on the spring-forward day and fires at
        // both 02:30s on the fall-back day.
        let windows = [allow("30 1-3 * * *", "10m", BERLIN)];
        check(
            &windows,
            &[
                (
                    "Sun 29 Mar 01:45 CET: no 02:30, next is 03:30 CEST",
                    Start,
                    "2026-03-29T01:45+01:00[Europe/Berlin]",
                    closed(
                        "2026-03-29T03:30+02:00[Europe/Berlin]",
                        "Sun 03:30 CEST",
                        OUTSIDE,
                    ),
                ),
                (
                    "Sun 25 Oct 02:45 CEST: opens again at 02:30 CET",
                    Start,
                    "2026-10-25T02:45+02:00[Europe/Berlin]",
                    closed(
                        "2026-10-25T02:30+01:00[Europe/Berlin]",
                        "Sun 02:30 CET",
                        OUTSIDE,
                    ),
                ),
                (
                    "Sun 25 Oct 02:35 CET: open",
                    Start,
                    "2026-10-25T02:35+01:00[Europe/Berlin]",
                    Want::Open,
                ),
            ],
        );
    }

    #[test]
    fn a_duration_is_real_time_across_a_clock_change() {
        // 01:00 for 2h: on the fall-back night that is 01:00 CEST to 02:00 CET (the hour from 02:00
        // repeats), on the spring-forward night 01:00 CET to 04:00 CEST (02:00 to 03:00 is skipped).
        let windows = [allow("0 1 * * *", "2h", BERLIN)];
        check(
            &windows,
            &[
                (
                    "fall back, 02:59 CEST: open",
                    Start,
                    "2026-10-25T02:59+02:00[Europe/Berlin]",
                    Want::Open,
                ),
                (
                    "fall back, 01:59 UTC",
                    Start,
                    "2026-10-25T00:59Z",
                    Want::Open,
                ),
                (
                    "fall back, 02:00 CET: two real hours are over",
                    Start,
                    "2026-10-25T02:00+01:00[Europe/Berlin]",
                    closed(
                        "2026-10-26T01:00+01:00[Europe/Berlin]",
                        "Mon 01:00 CET",
                        OUTSIDE,
                    ),
                ),
                (
                    "an ordinary night, 02:59 CET: open",
                    Start,
                    "2026-10-26T02:59+01:00[Europe/Berlin]",
                    Want::Open,
                ),
                (
                    "an ordinary night, 03:00 CET: closed",
                    Start,
                    "2026-10-26T03:00+01:00[Europe/Berlin]",
                    closed(
                        "2026-10-27T01:00+01:00[Europe/Berlin]",
                        "Tue 01:00 CET",
                        OUTSIDE,
                    ),
                ),
                (
                    "spring forward, 03:59 CEST: open",
                    Start,
                    "2026-03-29T03:59+02:00[Europe/Berlin]",
                    Want::Open,
                ),
                (
                    "spring forward, 04:00 CEST: closed",
                    Start,
                    "2026-03-29T04:00+02:00[Europe/Berlin]",
                    closed(
                        "2026-03-30T01:00+02:00[Europe/Berlin]",
                        "Mon 01:00 CEST",
                        OUTSIDE,
                    ),
                ),
            ],
        );
    }

    #[test]
    fn a_window_in_new_york_reads_in_new_york() {
        let windows = [allow("0 22 * * 1-5", "4h", "America/New_York")];
        check(
            &windows,
            &[
                (
                    "Sat 5 Dec noon UTC: opens Mon 22:00 EST",
                    Start,
                    "2026-12-05T12:00Z",
                    closed(
                        "2026-12-07T22:00[America/New_York]",
                        "Mon 22:00 EST",
                        OUTSIDE,
                    ),
                ),
                (
                    "Sat 4 Jul noon UTC: opens Mon 22:00 EDT",
                    Start,
                    "2026-07-04T12:00Z",
                    closed(
                        "2026-07-06T22:00[America/New_York]",
                        "Mon 22:00 EDT",
                        OUTSIDE,
                    ),
                ),
                (
                    "Tue 1 Dec 03:30 UTC: Monday 22:30 in New York, open",
                    Start,
                    "2026-12-01T03:30Z",
                    Want::Open,
                ),
            ],
        );
    }

    #[test]
    fn problems_name_the_field_and_quote_the_value() {
        let valid = allow("0 22 * * 1-5", "4h", BERLIN);
        /// (field, a part of the reason) for each problem, in order.
        type Wanted = &'static [(&'static str, &'static str)];
        let cases: [(&str, UpgradeWindow, Wanted); 20] = [
            ("valid", valid.clone(), &[]),
            ("a nickname", allow("@daily", "30m", "UTC"), &[]),
            (
                "the last day of the month",
                allow("0 0 L * *", "1h30m", "America/New_York"),
                &[],
            ),
            (
                "seconds and days",
                window(WindowKind::Deny, "0 0 * * SUN", "90s", None),
                &[],
            ),
            ("days", deny("0 0 24 12 *", "2d", BERLIN), &[]),
            ("weeks", deny("0 0 24 12 *", "1w", BERLIN), &[]),
            (
                "an hour out of range",
                allow("0 25 * * *", "4h", BERLIN),
                &[(
                    "schedule",
                    "\"0 25 * * *\" is not a cron schedule: hour 25 is out of range (0-23); write five fields: minute hour day-of-month month day-of-week, e.g. \"0 22 * * 1-5\"",
                )],
            ),
            (
                "six fields",
                allow("0 0 22 * * 1-5", "4h", BERLIN),
                &[(
                    "schedule",
                    "\"0 0 22 * * 1-5\" is not a cron schedule: it has 6 fields",
                )],
            ),
            (
                "empty",
                allow("", "4h", BERLIN),
                &[("schedule", "\"\" is not a cron schedule: it is empty")],
            ),
            (
                "a misspelt weekday",
                allow("0 22 * * MON-FRY", "4h", BERLIN),
                &[(
                    "schedule",
                    "day-of-week \"MON-FRY\" is not valid (0-7 or SUN-SAT)",
                )],
            ),
            (
                "a step from a number",
                allow("0/15 22 * * *", "4h", BERLIN),
                &[("schedule", "minute \"0/15\" is not valid (0-59)")],
            ),
            (
                "31 February",
                deny("0 0 31 2 *", "1d", BERLIN),
                &[("schedule", "\"0 0 31 2 *\" never fires")],
            ),
            (
                "words",
                allow("0 22 * * 1-5", "4 hours later", BERLIN),
                &[(
                    "duration",
                    "\"4 hours later\" is not a duration: write e.g. 4h, 30m or 1h30m",
                )],
            ),
            (
                "no unit",
                allow("0 22 * * 1-5", "4", BERLIN),
                &[("duration", "\"4\" is not a duration")],
            ),
            (
                "zero",
                allow("0 22 * * 1-5", "0s", BERLIN),
                &[("duration", "\"0s\" is not a duration longer than zero")],
            ),
            (
                "negative",
                allow("0 22 * * 1-5", "-4h", BERLIN),
                &[("duration", "\"-4h\" is not a duration longer than zero")],
            ),
            (
                "months",
                allow("0 22 * * 1-5", "1mo", BERLIN),
                &[("duration", "\"1mo\" is not a duration of fixed length")],
            ),
            (
                "over a year",
                deny("0 0 1 1 *", "367d", BERLIN),
                &[("duration", "\"367d\" is longer than 366 days")],
            ),
            (
                "a misspelt time zone",
                allow("0 22 * * 1-5", "4h", "Europe/Berlinn"),
                &[(
                    "timeZone",
                    "\"Europe/Berlinn\" is not an IANA time zone (e.g. Europe/Berlin, America/New_York, UTC)",
                )],
            ),
            (
                "everything wrong, in field order",
                allow("0 22 * *", "4x", "Mars/Olympus"),
                &[
                    (
                        "schedule",
                        "\"0 22 * *\" is not a cron schedule: it has 4 fields",
                    ),
                    ("duration", "\"4x\" is not a duration"),
                    ("timeZone", "\"Mars/Olympus\" is not an IANA time zone"),
                ],
            ),
        ];
        for (what, w, want) in cases {
            let got = problems(&w);
            assert_eq!(got.len(), want.len(), "{what}: {got:?}");
            for ((field, reason), (want_field, want_reason)) in got.iter().zip(want) {
                assert_eq!(field, want_field, "{what}: {got:?}");
                assert!(
                    reason.contains(want_reason),
                    "{what}: {reason:?} should contain {want_reason:?}"
                );
            }
        }
    }

    #[test]
    fn an_invalid_window_closes_the_gate() {
        let windows = [
            allow("0 22 * * 1-5", "4h", BERLIN),
            deny("0 0 24 12 *", "2d", "Europe/Berlinn"),
        ];
        let reason = "upgradeWindows[1] is invalid: \"Europe/Berlinn\" is not an IANA time zone";
        check(
            &windows,
            &[
                (
                    "inside the allow window: the unreadable freeze still closes it, with no opening",
                    Start,
                    "2026-12-01T23:00[Europe/Berlin]",
                    Want::Closed {
                        opens_at: None,
                        opens: "",
                        reason,
                    },
                ),
                // Neither window gates steps, so neither is read for a step.
                (
                    "a step: neither window counts",
                    Step,
                    "2026-12-01T23:00[Europe/Berlin]",
                    Want::Open,
                ),
            ],
        );
        let windows = [steps(allow("0 25 * * *", "4h", BERLIN))];
        check(
            &windows,
            &[(
                "a step, under an unreadable steps window",
                Step,
                "2026-12-01T23:00[Europe/Berlin]",
                Want::Closed {
                    opens_at: None,
                    opens: "",
                    reason: "upgradeWindows[0] is invalid: \"0 25 * * *\" is not a cron schedule: hour 25",
                },
            )],
        );
    }

    #[test]
    fn a_window_that_never_opens_within_the_horizon_has_no_opening() {
        // Deny all day, every day: there is no instant to open at.
        let windows = [deny("0 0 * * *", "25h", "UTC")];
        check(
            &windows,
            &[(
                "always frozen",
                Start,
                "2026-12-01T12:00Z",
                Want::Closed {
                    opens_at: None,
                    opens: "",
                    reason: "a deny window (0 0 * * *, 25h, UTC) is open",
                },
            )],
        );
    }

    #[test]
    fn recheck_rounds_up_to_whole_seconds() {
        let now = at("2026-12-01T12:00:00Z");
        let closed_until = |opens_at: Option<&str>| State::Closed {
            reason: String::new(),
            opens_at: opens_at.map(at),
            opens: String::new(),
        };
        let cases = [
            (
                "in five minutes",
                closed_until(Some("2026-12-01T12:05:00Z")),
                300,
            ),
            (
                "a millisecond over",
                closed_until(Some("2026-12-01T12:05:00.001Z")),
                301,
            ),
            (
                "half a second",
                closed_until(Some("2026-12-01T12:00:00.5Z")),
                1,
            ),
            ("now", closed_until(Some("2026-12-01T12:00:00Z")), 1),
            ("in the past", closed_until(Some("2026-12-01T11:00:00Z")), 1),
            (
                "in a week",
                closed_until(Some("2026-12-08T12:00:00Z")),
                7 * 24 * 3600,
            ),
            ("no opening known", closed_until(None), 300),
            ("open", State::Open, 300),
        ];
        for (what, state, want) in cases {
            assert_eq!(recheck_secs(&state, now), want, "{what}");
        }
    }
}
