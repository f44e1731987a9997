//! The gRPC interface of the Ordo rule engine server: package `ordo.v1`, generated from
//! `proto/ordo/v1/ordo.proto` at build time (protox, no system `protoc`).

/// Messages, the `OrdoService` server trait and its client.
pub mod v1 {
    #![allow(
        clippy::all,
        clippy::pedantic,
        clippy::unwrap_used,
        clippy::expect_used
    )]
    include!(concat!(env!("OUT_DIR"), "/ordo.v1.rs"));
}

/// The encoded `FileDescriptorSet` of `ordo.v1`, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/ordo_v1_descriptor.bin"));
