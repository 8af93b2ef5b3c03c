//! The bottom layers of an export, which hold its data: a VMware disk
//! through VDDK, or memory.

pub(crate) mod allocation;
mod memory;
mod vddk_disk;

pub use memory::MemoryBackend;
pub use vddk_disk::VddkDisk;
