//! systemd unit files for pods, rendered by pure functions from typed
//! values: no user string reaches a unit file without being escaped for the
//! setting it lands in. Writing the files and talking to systemd is the
//! agent's; the command line renders the same files to show what a change
//! would write (`berth diff`), so both must render with this crate alone.

pub mod escape;
pub mod name;
pub mod pod;
pub mod render;

pub use escape::{
    escape_free_text, escape_unit_name_component, quote_env_assignment, quote_exec_arg, EscapeError,
};
pub use name::{
    container_unit_name, network_volume_path, network_volume_unit_name, pod_network_unit_name,
    pod_slice_name, UnitName,
};
pub use pod::{app_container_name, holder_container_name, pod_unit_files, UnitFile};
pub use render::{
    container_cgroup_path, is_plain_absolute_path, pod_network_cgroup_path, render_build_unit,
    render_container_unit, render_network_mount_unit, render_pod_network_unit, render_pod_slice,
    restart_setting, BuildUnit, ContainerUnit, NetworkMountUnit, RenderError, NO_PROBES,
};
