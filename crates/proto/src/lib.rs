//! Shale's native gRPC API, generated from `proto/shale/v1`. The wire types stay here; the
//! engine (`shale-log`) never sees them — the agent converts at the boundary.

pub mod bounded;

/// Version 1 of the API (`package shale.v1`).
#[allow(unreachable_pub, missing_debug_implementations, clippy::pedantic)] // generated code
pub mod v1 {
    tonic::include_proto!("shale.v1");

    /// The encoded `FileDescriptorSet`, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("shale_v1_descriptor");
}
