//! ReadMetadata, WriteMetadata and GetMetadataKeys: the descriptor's disk
//! database, with VDDK's "required length" protocol.

use std::ffi::c_char;

use super::{disk_call, opt_str};
use crate::ffi::*;
use crate::knobs;
use crate::{errors, log};

/// Copies `bytes` into the caller's buffer when it fits, always reporting
/// the length needed.
///
/// # Safety
/// `buf` is NULL or valid for `len` bytes; `required` is NULL or writable.
unsafe fn give(
    bytes: &[u8],
    buf: *mut c_char,
    len: usize,
    required: *mut usize,
) -> Result<(), VixError> {
    if !required.is_null() {
        // SAFETY: non-NULL out pointer per the caller.
        unsafe { required.write(bytes.len()) };
    }
    if buf.is_null() || len < bytes.len() {
        return Err(VIX_E_BUFFER_TOOSMALL);
    }
    // SAFETY: `buf` has room for `len >= bytes.len()` bytes.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf as *mut u8, bytes.len()) };
    Ok(())
}

/// The value of one metadata key, NUL-terminated.
#[no_mangle]
pub extern "C" fn VixDiskLib_ReadMetadata(
    handle: Handle,
    key: *const c_char,
    buf: *mut c_char,
    len: usize,
    required: *mut usize,
) -> VixError {
    disk_call("VixDiskLib_ReadMetadata", handle, |_, disk| {
        disk.check_link("VixDiskLib_ReadMetadata")?;
        // SAFETY: NULL or a NUL-terminated string from the caller.
        let key = unsafe { opt_str(key) }.ok_or(VIX_E_INVALID_ARG)?;
        knobs::call_latency();
        let Some(value) = disk.engine().metadata_get(&key) else {
            return Err(VIX_E_DISK_KEY_NOTFOUND);
        };
        let mut bytes = value.into_bytes();
        bytes.push(0);
        // SAFETY: buffer and out pointer as the ABI describes them.
        unsafe { give(&bytes, buf, len, required) }?;
        Ok(VIX_OK)
    })
}

/// Sets one metadata key (rewrites the descriptor).
#[no_mangle]
pub extern "C" fn VixDiskLib_WriteMetadata(
    handle: Handle,
    key: *const c_char,
    value: *const c_char,
) -> VixError {
    disk_call("VixDiskLib_WriteMetadata", handle, |_, disk| {
        disk.check_link("VixDiskLib_WriteMetadata")?;
        // SAFETY: NULL or NUL-terminated strings from the caller.
        let (key, value) = unsafe { (opt_str(key), opt_str(value)) };
        let (Some(key), Some(value)) = (key, value) else {
            return Err(VIX_E_INVALID_ARG);
        };
        if disk.read_only {
            return Err(VIX_E_FILE_READ_ONLY);
        }
        knobs::call_latency();
        disk.engine().metadata_set(&key, &value).map_err(|e| {
            log::warn(&format!(
                "VixDiskLib: WriteMetadata {key}: {}",
                errors::describe(&e)
            ));
            errors::from_vmdk(&e)
        })?;
        Ok(VIX_OK)
    })
}

/// Every metadata key, NUL-separated, with an extra NUL at the end.
#[no_mangle]
pub extern "C" fn VixDiskLib_GetMetadataKeys(
    handle: Handle,
    buf: *mut c_char,
    len: usize,
    required: *mut usize,
) -> VixError {
    disk_call("VixDiskLib_GetMetadataKeys", handle, |_, disk| {
        disk.check_link("VixDiskLib_GetMetadataKeys")?;
        knobs::call_latency();
        let mut bytes = Vec::new();
        for key in disk.engine().metadata_keys() {
            bytes.extend_from_slice(key.as_bytes());
            bytes.push(0);
        }
        bytes.push(0);
        // SAFETY: buffer and out pointer as the ABI describes them.
        unsafe { give(&bytes, buf, len, required) }?;
        Ok(VIX_OK)
    })
}
