//! berth's API objects (pods, services, nodes, routes, events) and their
//! validation. This crate does no I/O: the agent, the master and the command
//! line share it so that a request is judged the same way everywhere.
#![forbid(unsafe_code)]

pub mod address;
pub mod api;
pub mod build;
pub mod cluster;
pub mod cron;
pub mod deployment;
pub mod endpoints;
pub mod event;
pub mod host_ports;
pub mod image_stream;
pub mod job;
pub mod labels;
pub mod limits;
pub mod link;
pub mod logs;
pub mod metrics;
pub mod name;
pub mod network_volume;
pub mod pod;
pub mod probe;
pub mod project;
pub mod quota;
pub mod route;
pub mod status;
pub mod template;
pub mod template_export;
pub mod user;
pub mod validation;
pub mod volume_move;

pub use address::{validate_node_address, AddressError};
pub use build::{Build, BuildConfig, BuildPhase};
pub use cluster::{Capacity, ClusterPod, Node, NodeCondition, Service, UnitSettings};
pub use cron::CronJob;
pub use deployment::{Deployment, DeploymentPhase, Strategy};
pub use endpoints::{Endpoint, EndpointsView, ServiceEndpoints};
pub use event::{Event, EventKind, UnknownEventKind};
pub use host_ports::{HostPortPolicy, PortRange};
pub use image_stream::ImageStream;
pub use job::{Job, JobPhase, JobStatus};
pub use labels::Labels;
pub use limits::MAX_REQUEST_BODY_BYTES;
pub use link::{EgressPolicy, Link};
pub use name::{is_env_name, validate_dns_label, validate_env_name, NameError};
pub use network_volume::NetworkVolume;
pub use pod::{
    Container, EnvVar, NetworkKind, NetworkSource, Pod, Port, Protocol, Resources, RestartPolicy,
    Security, Volume, VolumeMount,
};
pub use probe::{Check, ExecCheck, HttpCheck, Probe, Probes, TcpCheck};
pub use project::{Project, Role, DEFAULT_PROJECT};
pub use route::{Route, RouteTls, TlsTermination};
pub use status::{
    ApiError, ContainerStatus, HostPort, PodPhase, PodStatus, StartFailure, VolumeUsage,
};
pub use template::Template;
pub use user::{User, UserToken, WhoAmI};
pub use validation::{FieldError, ValidationErrors};
pub use volume_move::{MoveOrder, MovePhase, MoveReport, MoveRole, NodeCertificate, PodMove};
