//! `spec.dependsOn`: the apps an app's upgrades wait for, and roll back with. Evaluated by the
//! planner's start gate ([`crate::rollout`]) and checked across files by `bosun validate`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One app this app depends on. When one git commit changes both, this app's upgrade starts only
/// once that app is Healthy at what the commit asks for; when either fails, the other is rolled back
/// too (unless `rollbackTogether: false`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Dependency {
    /// The app's name.
    pub name: String,
    /// Its namespace. Defaults to this app's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Its kind: `ManagedApplication` (the default) or `Bestie`.
    #[serde(default, skip_serializing_if = "DependencyKind::is_default")]
    pub kind: DependencyKind,
    /// Whether a failure of either app of a commit rolls the other back too. Defaults to true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_together: Option<bool>,
}

impl Dependency {
    /// Whether the two apps roll back together.
    pub fn together(&self) -> bool {
        self.rollback_together.unwrap_or(true)
    }

    /// `namespace/name`, with `namespace` the depending app's when the dependency names none.
    pub fn key(&self, own_namespace: &str) -> String {
        format!(
            "{}/{}",
            self.namespace.as_deref().unwrap_or(own_namespace),
            self.name
        )
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DependencyKind {
    #[default]
    ManagedApplication,
    Bestie,
}

impl DependencyKind {
    fn is_default(&self) -> bool {
        *self == DependencyKind::ManagedApplication
    }
}
