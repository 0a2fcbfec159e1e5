//! The master's assignments against the pods this host keeps: which pods to
//! create, claim, replace or remove. Pure; the runtime carries it out.

use berth_model::Pod;

use crate::store::{PodRecord, Source};

/// One thing to do so the master's pods here are exactly its assignments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assignment<'a> {
    /// Assigned, not here: create it.
    Create(&'a Pod),
    /// Here with the same spec but recorded as local (adopted after a lost
    /// state directory): mark it the master's again.
    Claim(&'a PodRecord),
    /// The master changed its spec: delete and create again.
    Replace(&'a Pod),
    /// A local pod holds the name: leave both alone and report it.
    Conflict(&'a Pod),
    /// The master's pod is no longer assigned here (moved away while this
    /// host was cut off, or deleted): remove it.
    Remove(&'a str),
}

/// Plans the assignments; local pods are never touched.
pub fn plan_assignments<'a>(records: &'a [PodRecord], assigned: &'a [Pod]) -> Vec<Assignment<'a>> {
    let mut plan = Vec::new();
    for pod in assigned {
        match records.iter().find(|r| r.pod.name == pod.name) {
            None => plan.push(Assignment::Create(pod)),
            Some(record) if record.pod == *pod => {
                if record.source == Source::Local {
                    plan.push(Assignment::Claim(record));
                }
            }
            Some(record) if record.source == Source::Master => plan.push(Assignment::Replace(pod)),
            Some(_) => plan.push(Assignment::Conflict(pod)),
        }
    }
    for record in records.iter().filter(|r| r.source == Source::Master) {
        if !assigned.iter().any(|p| p.name == record.pod.name) {
            plan.push(Assignment::Remove(&record.pod.name));
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Desired;

    fn pod(name: &str, image: &str) -> Pod {
        serde_json::from_str(&format!(
            r#"{{"name":"{name}","containers":[{{"name":"c","image":"{image}"}}]}}"#
        ))
        .unwrap()
    }

    fn record(pod: Pod, source: Source) -> PodRecord {
        PodRecord {
            pod,
            host_ports: vec![],
            desired: Desired::Running,
            source,
        }
    }

    #[test]
    fn assignments_create_claim_replace_and_remove_but_never_touch_local_pods() {
        let records = vec![
            record(pod("same", "i"), Source::Master),
            record(pod("adopted", "i"), Source::Local),
            record(pod("changed", "old"), Source::Master),
            record(pod("mine", "i"), Source::Local),
            record(pod("moved-away", "i"), Source::Master),
            record(pod("local-only", "i"), Source::Local),
        ];
        let assigned = vec![
            pod("same", "i"),
            pod("adopted", "i"),
            pod("changed", "new"),
            pod("mine", "other"),
            pod("new", "i"),
        ];
        let plan = plan_assignments(&records, &assigned);
        assert_eq!(
            plan,
            [
                Assignment::Claim(&records[1]),
                Assignment::Replace(&assigned[2]),
                Assignment::Conflict(&assigned[3]),
                Assignment::Create(&assigned[4]),
                Assignment::Remove("moved-away"),
            ]
        );
    }
}
