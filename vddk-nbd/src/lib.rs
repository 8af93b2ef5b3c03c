//! NBD server over VDDK (work in progress).
