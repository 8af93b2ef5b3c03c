//! The NBD protocol without I/O: constants, the wire codec, the handshake
//! state machine, export features, request validation, reply shaping and
//! the errno map. The server module drives these with sockets; tests and
//! fuzzers drive them with byte slices.

pub mod consts;
pub mod errno;
pub mod export;
pub mod handshake;
pub mod reply;
pub mod request;
pub mod wire;
