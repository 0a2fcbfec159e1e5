//! berth's API objects (pods, services, nodes, routes, events) and their
//! validation. This crate does no I/O: the agent, the master and the command
//! line share it so that a request is judged the same way everywhere.
#![forbid(unsafe_code)]

pub mod api;
pub mod cluster;
pub mod event;
pub mod limits;
pub mod logs;
pub mod metrics;
pub mod name;
pub mod pod;
pub mod status;
pub mod validation;

pub use cluster::{Capacity, ClusterPod, Node, NodeCondition, Service};
pub use event::{Event, EventKind, UnknownEventKind};
pub use limits::MAX_REQUEST_BODY_BYTES;
pub use name::{validate_dns_label, NameError};
pub use pod::{
    Container, EnvVar, Pod, Port, Protocol, Resources, RestartPolicy, Volume, VolumeMount,
};
pub use status::{ApiError, ContainerStatus, HostPort, PodPhase, PodStatus};
pub use validation::{FieldError, ValidationErrors};
