//! Nodes: they join (`api::join`) and beat; the API reads, cordons and
//! drains them. Nothing of a node is secret: its credential lives apart.

use berth_model::{Node, ValidationErrors};

use super::{Resource, Settings};
use crate::objects::NODES;

impl Resource for Node {
    const KIND: &'static str = "node";
    const PREFIX: &'static str = NODES;

    fn name(&self) -> &str {
        &self.name
    }

    fn validate(&self, _settings: &Settings<'_>) -> Result<(), ValidationErrors> {
        Node::validate(self)
    }

    fn redacted(self) -> Self {
        self
    }
}
