//! Connect parameters in C form: built from the safe layer's typed
//! parameters for ConnectEx (and PrepareForAccess, EndAccess, Cleanup),
//! and copied back out of what GetConnectParams reports.

use std::ffi::c_char;
use std::ptr;

use vddk_sys::VixDiskLibConnectParams;
use zeroize::Zeroizing;

use super::{c_string, Lib};
use crate::error::Result;

/// What ConnectEx needs, in the library's terms; the safe layer builds it
/// from its typed parameters.
pub(crate) struct ConnectSpec<'a> {
    /// `moref=...`, or `None` for local files.
    pub vmx_spec: Option<String>,
    pub server: Option<&'a str>,
    pub thumbprint: Option<String>,
    pub creds: Option<CredSpec<'a>>,
    /// 0: the library's default.
    pub port: u32,
    /// 0: the library's default.
    pub nfc_host_port: u32,
    pub read_only: bool,
    pub snapshot: Option<&'a str>,
    /// Colon-separated transport modes.
    pub transports: Option<String>,
}

/// Credentials as ConnectEx takes them.
pub(crate) enum CredSpec<'a> {
    UserPassword {
        user: &'a str,
        password: &'a str,
    },
    SessionCookie {
        cookie: &'a str,
        user: Option<&'a str>,
        key: Option<&'a str>,
    },
}

/// A NUL-terminated copy of a string, zeroed when dropped (secrets pass
/// through these too).
struct CBuf(Zeroizing<Vec<u8>>);

impl CBuf {
    fn new(what: &str, s: &str) -> Result<CBuf> {
        // Checked here so that neither the error message nor the vector
        // inside CString's error holds a copy of a secret.
        if SECRET_FIELDS.contains(&what) && s.contains('\0') {
            return Err(crate::Error::InvalidArgument(format!(
                "the {what} contains a NUL byte, which VDDK cannot take"
            )));
        }
        let c = c_string(what, s)?;
        Ok(CBuf(Zeroizing::new(c.into_bytes_with_nul())))
    }

    /// C APIs take `char *` even for strings they only read.
    fn ptr(&self) -> *mut c_char {
        self.0.as_ptr().cast_mut().cast()
    }
}

/// Fields whose values never appear in an error message.
const SECRET_FIELDS: &[&str] = &["password", "cookie", "key"];

/// Who allocated a [`RawParams`] struct, which decides how it is freed.
#[derive(Clone, Copy)]
enum Origin {
    Boxed,
    Library,
}

/// A `VixDiskLibConnectParams` filled from a [`ConnectSpec`]; its strings
/// live exactly as long as it does, and Drop frees it with the function
/// that matches how it was allocated.
pub(crate) struct RawParams<'l> {
    ptr: *mut VixDiskLibConnectParams,
    lib: &'l Lib,
    origin: Origin,
    _strings: Vec<CBuf>,
}

impl<'l> RawParams<'l> {
    pub(crate) fn new(lib: &'l Lib, p: &ConnectSpec<'_>) -> Result<RawParams<'l>> {
        // Converted before allocating, so an invalid string leaks nothing.
        let mut strings = Vec::new();
        let mut keep = |what: &str, s: &str| -> Result<*mut c_char> {
            let b = CBuf::new(what, s)?;
            let ptr = b.ptr();
            strings.push(b);
            Ok(ptr)
        };
        let vmx = p.vmx_spec.as_deref().map(|v| keep("vm", v)).transpose()?;
        let server = p.server.map(|s| keep("server", s)).transpose()?;
        let thumb = p
            .thumbprint
            .as_deref()
            .map(|t| keep("thumbprint", t))
            .transpose()?;
        let creds = match &p.creds {
            None => None,
            Some(CredSpec::UserPassword { user, password }) => Some((
                vddk_sys::VIXDISKLIB_CRED_UID,
                [
                    keep("user", user)?,
                    keep("password", password)?,
                    ptr::null_mut(),
                ],
            )),
            Some(CredSpec::SessionCookie { cookie, user, key }) => Some((
                vddk_sys::VIXDISKLIB_CRED_SESSIONID,
                [
                    keep("cookie", cookie)?,
                    user.map(|u| keep("user", u))
                        .transpose()?
                        .unwrap_or(ptr::null_mut()),
                    key.map(|k| keep("key", k))
                        .transpose()?
                        .unwrap_or(ptr::null_mut()),
                ],
            )),
        };

        let (ptr, origin) = match lib.optional().allocate_connect_params {
            // SAFETY: AllocateConnectParams takes nothing and returns a
            // zeroed struct (or NULL) that FreeConnectParams releases.
            Some(alloc) => match unsafe { alloc() } {
                p if p.is_null() => (zeroed_params(), Origin::Boxed),
                p => (p, Origin::Library),
            },
            None => (zeroed_params(), Origin::Boxed),
        };
        let raw = RawParams {
            ptr,
            lib,
            origin,
            _strings: strings,
        };
        // SAFETY: `ptr` is a valid, exclusively owned struct (either ours
        // or fresh from AllocateConnectParams); the strings stay alive in
        // `raw` for as long as the pointers are stored.
        unsafe {
            let c = &mut *ptr;
            c.vmxSpec = vmx.unwrap_or(ptr::null_mut());
            c.serverName = server.unwrap_or(ptr::null_mut());
            c.thumbPrint = thumb.unwrap_or(ptr::null_mut());
            c.specType = vddk_sys::VIXDISKLIB_SPEC_VMX;
            c.port = p.port;
            c.nfcHostPort = p.nfc_host_port;
            if let Some((ty, [a, b, k])) = creds {
                c.credType = ty;
                if ty == vddk_sys::VIXDISKLIB_CRED_UID {
                    c.creds.uid.userName = a;
                    c.creds.uid.password = b;
                } else {
                    c.creds.sessionId.cookie = a;
                    c.creds.sessionId.userName = b;
                    c.creds.sessionId.key = k;
                }
            }
        }
        Ok(raw)
    }

    pub(crate) fn as_ptr(&self) -> *const VixDiskLibConnectParams {
        self.ptr
    }
}

fn zeroed_params() -> *mut VixDiskLibConnectParams {
    // SAFETY: the struct holds only integers, raw pointers and unions of
    // raw pointers, for which all-zero bytes are valid (NULL / 0).
    let zero: VixDiskLibConnectParams = unsafe { std::mem::zeroed() };
    Box::into_raw(Box::new(zero))
}

impl Drop for RawParams<'_> {
    fn drop(&mut self) {
        // SAFETY: `ptr` is valid and ours. The string pointers are cleared
        // first so a FreeConnectParams that frees string fields never frees
        // memory it did not allocate.
        unsafe {
            let c = &mut *self.ptr;
            c.vmxSpec = ptr::null_mut();
            c.serverName = ptr::null_mut();
            c.thumbPrint = ptr::null_mut();
            c.creds.sessionId.cookie = ptr::null_mut();
            c.creds.sessionId.userName = ptr::null_mut();
            c.creds.sessionId.key = ptr::null_mut();
        }
        match self.origin {
            Origin::Boxed => {
                // SAFETY: allocated by `zeroed_params` with Box, freed once here.
                drop(unsafe { Box::from_raw(self.ptr) });
            }
            Origin::Library => {
                if let Some(free) = self.lib.optional().free_connect_params {
                    // SAFETY: allocated by AllocateConnectParams, freed once here.
                    unsafe { free(self.ptr) };
                }
                // Without FreeConnectParams the struct is leaked: freeing
                // library memory with another allocator would be worse.
            }
        }
    }
}

/// What GetConnectParams reports, copied out of the library's struct
/// (which is freed at once): the secrets are zeroed when dropped.
pub(crate) struct ReportedParams {
    pub vmx_spec: Option<String>,
    pub server: Option<String>,
    pub thumbprint: Option<String>,
    pub port: u32,
    pub nfc_host_port: u32,
    pub creds: Option<ReportedCreds>,
}

/// The credentials in a [`ReportedParams`].
pub(crate) enum ReportedCreds {
    UserPassword {
        user: String,
        password: Zeroizing<String>,
    },
    SessionCookie {
        cookie: Zeroizing<String>,
        user: Option<String>,
        key: Option<Zeroizing<String>>,
    },
}

/// An owned copy of a C string VDDK handed out, NULL being `None`.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string valid for the call.
pub(super) unsafe fn owned(p: *const c_char) -> Option<String> {
    if p.is_null() {
        return None;
    }
    // SAFETY: non-NULL and NUL-terminated, as the caller promises.
    let c = unsafe { std::ffi::CStr::from_ptr(p) };
    Some(c.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_secret_is_not_repeated_in_the_error() {
        for what in SECRET_FIELDS {
            let e = CBuf::new(what, "hunter\0x2").err().unwrap().to_string();
            assert!(e.contains("NUL") && !e.contains("hunter"), "{e}");
        }
        let e = CBuf::new("user", "ro\0ot").err().unwrap().to_string();
        assert!(e.contains("ro\\0ot"), "{e}");
    }
}
