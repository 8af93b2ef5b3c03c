//! NBD server for VMware virtual disks.
//!
//! Layers, bottom up:
//! - [`proto`]: the NBD protocol without I/O (codec, handshake state
//!   machine, export features, request validation, reply shaping, error
//!   numbers).
//! - [`backend`]: what an export is, as a stack of [`backend::Backend`]
//!   layers with typed errors; [`plugins`]: the bottom layers (a VMware
//!   disk through [`vddk::DiskDriver`], memory).
//! - [`server`]: listeners, connections and their threads.
//!
//! # Threads
//!
//! Each connection has a thread that reads requests. A backend that
//! answers in short synchronous calls ([`backend::Caps::inline`]: the
//! memory disk, and a VDDK disk opened with the `file` transport) is
//! called on that thread, and the reply is written there too, under the
//! connection's output lock: no thread switch per request, which at local
//! speeds costs as much as the I/O. A remote VDDK disk's requests are
//! issued by its driver's thread and complete on VDDK's threads, which
//! hand each reply to a writer thread per connection, which batches them:
//! two thread switches per request.
//!
//! # Protocol choices
//!
//! - Fixed newstyle only, NO_ZEROES honoured. Options: EXPORT_NAME, INFO,
//!   GO, LIST, ABORT, STRUCTURED_REPLY, LIST/SET_META_CONTEXT
//!   (`base:allocation`), and STARTTLS when [`ServerConfig::tls`] is set;
//!   anything else gets NBD_REP_ERR_UNSUP.
//! - TLS ([`tls`]): with [`tls::TlsMode::Require`] every option before
//!   STARTTLS but ABORT gets NBD_REP_ERR_TLS_REQD and EXPORT_NAME closes.
//!   Structured replies and metadata contexts agreed in plain text are
//!   forgotten at the upgrade; bytes pipelined behind STARTTLS close the
//!   connection; the session ends with close_notify. With one
//!   export ([`Server::new`]) every export name is accepted and served as
//!   it, as nbdkit does; LIST and NBD_INFO_NAME report the configured name.
//!   With an [`exports::ExportRegistry`] ([`Server::with_exports`]) names
//!   choose among several disks, each with its own backend; LIST gives
//!   their names and descriptions and the empty name is the first.
//! - Option payloads above 64 KiB are answered NBD_REP_ERR_TOO_BIG and the
//!   connection is closed, without reading or allocating the claimed size.
//! - Block sizes: minimum 1 (a request off sector boundaries is read and
//!   merged a whole sector at a time below), preferred the disk's physical
//!   sector size (at least 4096), maximum payload 32 MiB
//!   ([`backend::MAX_PAYLOAD`]). A READ or WRITE above it gets EOVERFLOW
//!   (EINVAL without structured replies); the payload of any refused WRITE
//!   is read and discarded in 64 KiB pieces, so the connection stays in step.
//! - Past the end: ENOSPC for WRITE and WRITE_ZEROES, EINVAL otherwise;
//!   zero-length requests and unknown commands or flags: EINVAL. Structured
//!   error replies carry a message.
//! - WRITE_ZEROES is emulated by writing zeroes, so FAST_ZERO is advertised
//!   and always answered ENOTSUP at once. TRIM is not advertised. DF is
//!   advertised with structured replies. CAN_MULTI_CONN is advertised: every
//!   connection shares one backend, so a flush on one covers all.
//! - Reads of unallocated ranges come back as OFFSET_HOLE chunks when the
//!   backend already knows the allocation (for VDDK, once block status has
//!   cached it).
#![forbid(unsafe_code)]

// The README's examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

pub mod backend;
pub mod datastore;
pub mod exports;
pub mod filters;
pub mod params;
pub mod plugins;
pub mod proto;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
pub mod thumbprint;
#[cfg(feature = "server")]
pub mod tls;
pub mod vmx;

#[cfg(feature = "server")]
pub use server::{Listener, Server, ServerConfig, ShutdownHandle, SHUTDOWN_GRACE};
