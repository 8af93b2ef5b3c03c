//! A fake libvixDiskLib: the VixDiskLib C ABI over real VMDK files and
//! simulated vSphere servers, for testing VDDK consumers without VMware's
//! library.
//!
//! Layers: [`vmdk`] is the disk engine (no C ABI); `api` holds the exported
//! `VixDiskLib_*` functions, which use `handles` (live handles and memory
//! handed out), `remote` (the simulated inventory), `knobs` (behaviour set
//! by environment variables), `link` (bandwidth, costs and losses of the
//! simulated servers), `rules` (usage rules and strict mode),
//! `asyncio` (completion thread), `stats` and `log`.

pub use libdir::{build_libdir, libdir, LIBDIR_ENV};

// Some engine helpers serve its own tests and have no caller in the ABI layer.
#[allow(dead_code)]
pub mod vmdk;

mod api;
mod asyncio;
mod errors;
mod ffi;
mod handles;
mod knobs;
pub mod libdir;
mod link;
mod log;
mod remote;
mod rules;
mod stats;
