//! libvirt asks for the user name when an `esx://` or `vpx://` URI names
//! none (`virsh -c esx://host` prompts "Enter username for host [root]:");
//! `uri=` does the same on a terminal, and says what to add elsewhere.

use std::ffi::OsString;
use std::io::{BufRead, IsTerminal, Write};
use std::sync::OnceLock;

use vddk_nbd::params::uri::Scheme;
use vddk_nbd::params::VddkParams;

/// The name typed, for the background copy of the server (which has no
/// terminal) to be given as `user=`.
static TYPED: OnceLock<String> = OnceLock::new();

/// Fills `p.user` when `uri=` names no user and neither `user=` nor a
/// session cookie is given: asked for on a terminal (libvirt's default,
/// `root` on a host, `administrator` on a vCenter, when the answer is
/// empty), else an error saying where to write it.
pub fn fill(p: &mut VddkParams) -> Result<(), String> {
    let Some(uri) = &p.uri else {
        return Ok(());
    };
    if p.user.is_some() || p.cookie.is_some() {
        return Ok(());
    }
    let server = uri.server.clone();
    let default = match uri.scheme {
        Scheme::Esx => "root",
        Scheme::Vpx => "administrator",
    };
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(format!(
            "uri=: the URI names no user and no user= was given: write it into the URI \
             (e.g. esx://{default}@{server}/) or give user=NAME; on a terminal it is asked for"
        ));
    }
    let mut err = std::io::stderr();
    let _ = write!(err, "Enter username for {server} [{default}]: ");
    let _ = err.flush();
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("uri=: cannot read the user name: {e}"))?;
    let typed = line.trim();
    let user = if typed.is_empty() { default } else { typed }.to_string();
    let _ = TYPED.set(user.clone());
    p.user = Some(user);
    Ok(())
}

/// `user=NAME` for the background copy, when the name was typed here.
pub fn child_arg() -> Option<OsString> {
    TYPED.get().map(|u| OsString::from(format!("user={u}")))
}
