//! The resource kinds Bosun reads from git and reconciles: their wire types and CRDs.

pub mod analysis;
pub mod bestie;
pub mod depends;
pub mod managed_app;
pub mod pause;
pub mod routing;
pub mod window;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use kube::core::crd::merge_crds;
use schemars::{Schema, SchemaGenerator, json_schema};

pub use analysis::{
    Analysis, AnalysisPhase, AnalysisRun, EmptyResult, Measurement, MeasurementOutcome, Metric,
    MetricProvider, PrometheusMetric, Seconds,
};
pub use bestie::{Bestie, BestieDatabase, BestieSpec, BestieStatus, BestieTemplate};
pub use depends::{Dependency, DependencyKind};
pub use managed_app::*;
pub use pause::Pause;
pub use routing::{GatewayApiRouting, NginxRouting, OpenshiftRouteRouting, TrafficRouting};
pub use window::{UpgradeWindow, WindowGate, WindowKind};

/// An object whose fields are not checked (a patch, say).
pub(crate) fn preserve_unknown_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// The CustomResourceDefinitions of every kind, in a stable order.
pub fn crds() -> Vec<CustomResourceDefinition> {
    let _ = merge_crds; // one version per kind for now; merge_crds joins versions when v1beta1 comes
    vec![ManagedApplication::crd(), Bestie::crd()]
}

/// A kind Bosun reads from git.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    ManagedApplication,
    Bestie,
}

impl Kind {
    pub const ALL: [Kind; 2] = [Kind::ManagedApplication, Kind::Bestie];

    pub fn name(self) -> &'static str {
        match self {
            Kind::ManagedApplication => "ManagedApplication",
            Kind::Bestie => "Bestie",
        }
    }

    pub fn api_version(self) -> &'static str {
        match self {
            Kind::ManagedApplication => "apps.example.com/v1alpha1",
            Kind::Bestie => "pets.bestie.com/v1",
        }
    }

    pub fn from_name(kind: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == kind)
    }

    pub fn crd(self) -> CustomResourceDefinition {
        match self {
            Kind::ManagedApplication => ManagedApplication::crd(),
            Kind::Bestie => Bestie::crd(),
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
