//! `spec.upgradeWindows`: when an upgrade may start (allow windows) and when it may not (deny windows,
//! change freezes), as Argo CD's sync windows. Evaluated by [`crate::window`].

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One window: from each time its cron `schedule` fires, for `duration`, in `timeZone`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeWindow {
    /// `allow` (the default): upgrades start only inside an allow window, when the app has any.
    /// `deny`: no upgrade starts inside it; deny wins over allow.
    #[serde(default, skip_serializing_if = "WindowKind::is_allow")]
    pub kind: WindowKind,
    /// When the window opens: a five-field cron expression (minute hour day-of-month month
    /// day-of-week), e.g. `0 22 * * 1-5` for 22:00 on weekdays.
    pub schedule: String,
    /// How long the window stays open from each opening: `4h`, `30m`, `1h30m`.
    pub duration: String,
    /// The IANA time zone the schedule is read in, e.g. `Europe/Berlin`. Defaults to `UTC`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// What the window gates: `start` (the default) the start of an upgrade only; `steps` also each
    /// canary step and the blue-green switch. A window never delays a rollback, a return to a revision
    /// healthy before, or the end of a pause.
    #[serde(default, skip_serializing_if = "WindowGate::is_start")]
    pub gate: WindowGate,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum WindowKind {
    #[default]
    Allow,
    Deny,
}

impl WindowKind {
    fn is_allow(&self) -> bool {
        *self == WindowKind::Allow
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum WindowGate {
    /// The start of an upgrade.
    #[default]
    Start,
    /// The start, each canary step and the blue-green switch.
    Steps,
}

impl WindowGate {
    fn is_start(&self) -> bool {
        *self == WindowGate::Start
    }
}
