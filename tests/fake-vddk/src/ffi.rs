//! `#[repr(C)]` mirrors of the VixDiskLib types (VDDK 7.0+ layouts, Linux
//! x86_64) and the constants the fake uses. Kept separate from any other
//! crate on purpose: the fake is the other side of the ABI.

use std::ffi::{c_char, c_int, c_void};

/// VixError: only the low 16 bits carry the code.
pub type VixError = u64;
/// C `char` used as a boolean.
pub type Bool = c_char;
/// Opaque connection handle (a registry id, never dereferenced).
pub type Connection = *mut c_void;
/// Opaque disk handle (a registry id, never dereferenced).
pub type Handle = *mut c_void;
/// `void log(const char *fmt, va_list)`; on x86_64 a va_list argument is a pointer.
pub type LogFunc = unsafe extern "C" fn(fmt: *const c_char, args: *mut c_void);
/// Completion of an async request.
pub type CompletionCb = Option<unsafe extern "C" fn(data: *mut c_void, result: VixError)>;
/// Progress callback; returning 0 asks to stop.
pub type ProgressFunc = Option<unsafe extern "C" fn(data: *mut c_void, percent: c_int) -> Bool>;

pub const SECTOR: u64 = 512;

pub const VIX_OK: VixError = 0;
pub const VIX_E_FAIL: VixError = 1;
pub const VIX_E_OUT_OF_MEMORY: VixError = 2;
pub const VIX_E_INVALID_ARG: VixError = 3;
pub const VIX_E_FILE_NOT_FOUND: VixError = 4;
pub const VIX_E_OBJECT_IS_BUSY: VixError = 5;
pub const VIX_E_NOT_SUPPORTED: VixError = 6;
pub const VIX_E_FILE_ERROR: VixError = 7;
pub const VIX_E_DISK_FULL: VixError = 8;
pub const VIX_E_FILE_READ_ONLY: VixError = 11;
pub const VIX_E_FILE_ALREADY_EXISTS: VixError = 12;
pub const VIX_E_FILE_ACCESS_ERROR: VixError = 13;
pub const VIX_E_FILE_ALREADY_LOCKED: VixError = 15;
pub const VIX_E_BUFFER_TOOSMALL: VixError = 24;
pub const VIX_E_AUTHENTICATION_FAIL: VixError = 35;
pub const VIX_E_HOST_CONNECTION_LOST: VixError = 36;
pub const VIX_E_INVALID_HANDLE: VixError = 1000;
pub const VIX_E_HOST_USER_PERMISSIONS: VixError = 3014;
pub const VIX_E_VM_NOT_FOUND: VixError = 4000;
pub const VIX_E_SNAPSHOT_NOTFOUND: VixError = 13003;
pub const VIX_E_HOST_SERVER_NOT_FOUND: VixError = 14008;
pub const VIX_E_HOST_NETWORK_CONN_REFUSED: VixError = 14009;
pub const VIX_E_HOST_TCP_CONN_LOST: VixError = 14011;
pub const VIX_E_DISK_INVAL: VixError = 16000;
pub const VIX_E_DISK_OUTOFRANGE: VixError = 16007;
pub const VIX_E_DISK_KEY_NOTFOUND: VixError = 16052;
pub const VIX_E_CANNOT_CONNECT_TO_HOST: VixError = 18000;
pub const VIX_ASYNC: VixError = 25000;
pub const VIX_E_ASYNC_MIXEDMODE_UNSUPPORTED: VixError = 26000;
pub const VIX_E_NET_HTTP_SSL_SECURITY: VixError = 30201;

pub const FLAG_OPEN_SINGLE_LINK: u32 = 2;
pub const FLAG_OPEN_READ_ONLY: u32 = 4;

pub const CRED_UID: u32 = 1;
pub const CRED_SESSIONID: u32 = 2;

pub const MIN_CHUNK_SIZE: u64 = 128;
pub const MAX_CHUNK_NUMBER: u64 = 512 * 1024;

/// VixDiskLibGeometry (12 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct Geometry {
    pub cylinders: u32,
    pub heads: u32,
    pub sectors: u32,
}

/// User name and password credentials.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct UidPasswdCreds {
    pub user_name: *mut c_char,
    pub password: *mut c_char,
}

/// HTTP session cookie credentials.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SessionIdCreds {
    pub cookie: *mut c_char,
    pub user_name: *mut c_char,
    pub key: *mut c_char,
}

/// VixDiskLibCreds (24 bytes).
#[repr(C)]
#[derive(Clone, Copy)]
pub union Creds {
    pub uid: UidPasswdCreds,
    pub session_id: SessionIdCreds,
    pub ticket_id: *mut c_void,
}

/// VixDiskLibVStorageObjectSpec.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct VStorageObjectSpec {
    pub id: *mut c_char,
    pub datastore_moref: *mut c_char,
    pub ss_id: *mut c_char,
}

/// VixDiskLibConnectParams, VDDK 7.0+ layout (128 bytes).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ConnectParams {
    pub vmx_spec: *mut c_char,
    pub server_name: *mut c_char,
    pub thumb_print: *mut c_char,
    pub reserved1: std::ffi::c_long,
    pub cred_type: u32,
    pub creds: Creds,
    pub port: u32,
    pub nfc_host_port: u32,
    pub reserved3: *mut c_char,
    pub reserved4: [c_char; 8],
    pub reserved5: *mut c_void,
    pub spec: VStorageObjectSpec,
    pub spec_type: u32,
}

/// VixDiskLibInfo (64 bytes).
#[repr(C)]
pub struct Info {
    pub bios_geo: Geometry,
    pub phys_geo: Geometry,
    pub capacity: u64,
    pub adapter_type: u32,
    pub num_links: c_int,
    pub parent_file_name_hint: *mut c_char,
    pub uuid: *mut c_char,
    pub logical_sector_size: u32,
    pub physical_sector_size: u32,
}

/// VixDiskLibCreateParams (32 bytes).
#[repr(C)]
pub struct CreateParams {
    pub disk_type: u32,
    pub adapter_type: u32,
    pub hw_version: u16,
    pub capacity: u64,
    pub logical_sector_size: u32,
    pub physical_sector_size: u32,
}

/// VixDiskLibBlock.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Block {
    pub offset: u64,
    pub length: u64,
}

/// VixDiskLibBlockList header; `blocks[]` follows at offset 8.
#[repr(C)]
pub struct BlockList {
    pub num_blocks: u32,
    pub blocks: [Block; 0],
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{align_of, offset_of, size_of};

    #[test]
    fn layouts_match_the_header() {
        assert_eq!(size_of::<Geometry>(), 12);
        assert_eq!(size_of::<Creds>(), 24);
        assert_eq!(size_of::<ConnectParams>(), 128);
        assert_eq!(align_of::<ConnectParams>(), 8);
        assert_eq!(offset_of!(ConnectParams, cred_type), 32);
        assert_eq!(offset_of!(ConnectParams, creds), 40);
        assert_eq!(offset_of!(ConnectParams, port), 64);
        assert_eq!(offset_of!(ConnectParams, nfc_host_port), 68);
        assert_eq!(offset_of!(ConnectParams, reserved3), 72);
        assert_eq!(offset_of!(ConnectParams, reserved4), 80);
        assert_eq!(offset_of!(ConnectParams, spec), 96);
        assert_eq!(offset_of!(ConnectParams, spec_type), 120);
        assert_eq!(size_of::<Info>(), 64);
        assert_eq!(offset_of!(Info, capacity), 24);
        assert_eq!(offset_of!(Info, adapter_type), 32);
        assert_eq!(offset_of!(Info, num_links), 36);
        assert_eq!(offset_of!(Info, parent_file_name_hint), 40);
        assert_eq!(offset_of!(Info, uuid), 48);
        assert_eq!(offset_of!(Info, logical_sector_size), 56);
        assert_eq!(size_of::<CreateParams>(), 32);
        assert_eq!(offset_of!(CreateParams, hw_version), 8);
        assert_eq!(offset_of!(CreateParams, capacity), 16);
        assert_eq!(offset_of!(CreateParams, logical_sector_size), 24);
        assert_eq!(size_of::<Block>(), 16);
        assert_eq!(offset_of!(BlockList, blocks), 8);
    }
}
