//! NBD server for VMware virtual disks.
//!
//! Layers, bottom up:
//! - [`proto`]: the NBD protocol without I/O (codec, handshake state
//!   machine, request validation, error numbers).
//! - [`backend`]: the exported disk behind a [`backend::Backend`] trait,
//!   with an in-memory implementation and one over VDDK.
//! - [`server`]: listeners, connections and their threads.
#![forbid(unsafe_code)]

pub mod backend;
pub mod proto;
pub mod server;

pub use server::{Listener, Server, ServerConfig, ShutdownHandle};
