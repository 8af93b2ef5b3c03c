//! The NBD protocol without I/O: constants, the wire codec, the handshake
//! state machine, request validation and the errno map. The server module
//! drives these with sockets; tests drive them with byte slices.

pub mod consts;
pub mod errno;
pub mod handshake;
pub mod request;
pub mod wire;
