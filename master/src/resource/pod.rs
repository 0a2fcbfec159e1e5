//! Pods: the controller creates and updates them; the API lists, watches,
//! gets and deletes them.

use berth_model::{ClusterPod, ValidationErrors};

use super::{Resource, Scope, Settings};
use crate::objects::PODS;

impl Resource for ClusterPod {
    const KIND: &'static str = "pod";
    const PREFIX: &'static str = PODS;
    const SCOPE: Scope = Scope::Project;

    fn name(&self) -> &str {
        &self.spec.name
    }

    fn validate(&self, settings: &Settings<'_>) -> Result<(), ValidationErrors> {
        // Named as the pod's JSON spells them: under `spec`.
        let mut errors = ValidationErrors::new();
        for e in self.spec.validate().err().unwrap_or_default().errors() {
            errors.push(format!("spec.{}", e.field), e.message.clone());
        }
        settings.host_ports.check(&self.spec, "spec.", &mut errors);
        berth_model::pod::check_network_servers(
            &self.spec,
            settings.network_volume_servers,
            "the master's",
            "spec.",
            &mut errors,
        );
        errors.into_result()
    }

    fn unqualified(self) -> Self {
        ClusterPod::unqualified(self)
    }

    fn redacted(self) -> Self {
        ClusterPod::redacted(self)
    }
}
