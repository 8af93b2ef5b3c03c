//! Safe API over VDDK (work in progress).
