//! HAProxy: the configuration ([`render`]), its check (`haproxy -c`,
//! [`check`]) and the runtime API on its admin socket ([`runtime`]).

pub mod check;
pub mod render;
pub mod runtime;
