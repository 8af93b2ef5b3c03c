//! A fake libvixDiskLib: the VixDiskLib C ABI over real VMDK files and
//! simulated vSphere servers, for testing VDDK consumers without VMware's
//! library.
#![allow(dead_code)]

pub mod vmdk;
