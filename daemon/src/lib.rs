//! What berth's daemons (master, agent, router) share, so that it lives
//! once: how they log ([`telemetry`]), how they read their config file
//! ([`config`]), when they stop ([`shutdown`]), and systemd's D-Bus
//! interfaces as typed zbus proxies ([`systemd`]).
#![forbid(unsafe_code)]

pub mod config;
pub mod shutdown;
pub mod systemd;
pub mod telemetry;
