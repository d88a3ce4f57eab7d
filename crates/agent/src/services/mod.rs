//! The gRPC services of `shale.v1`, thin adapters over [`shale_log::Log`].

mod admin;
mod groups;
mod log;

pub(crate) use admin::AdminService;
pub(crate) use groups::GroupService;
pub(crate) use log::LogService;
