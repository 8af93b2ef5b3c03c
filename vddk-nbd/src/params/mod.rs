//! The nbdkit parameter language: the `key=value` words of an `nbdkit`
//! command line (a bare word is `file=`), nbdkit's sizes and booleans, and
//! the `vddk` plugin's parameters in it. Shared by the `vddk-nbd` binary
//! and any program that wants the same command line (the examples use it
//! without the server: build with `default-features = false`).
//!
//! - [`vddk_plugin`]: `key=value` pairs into a typed [`VddkParams`],
//!   checked with nbdkit's rules ([`vddk_plugin::validate`]).
//! - [`size`]: nbdkit's size syntax (`512`, `64K`, `1G`).
//! - [`password`]: the four forms of `password=` and `cookie=`
//!   ([`Password`]), read only when needed into zeroizing [`Secrets`].
//! - [`handover`]: passing a secret to a program we exec or spawn through
//!   an inherited pipe, never its command line or environment.
//! - Re-running the program once with `libdir/lib64` on `LD_LIBRARY_PATH`
//!   is [`vddk::library_path`]'s, shared with every program on `vddk`.
//! - [`connect`]: the typed parameters turned into the `vddk` crate's
//!   [`vddk::ConnectParams`], [`vddk::OpenFlags`] and friends.
//! - [`uri`]: libvirt's `esx://` and `vpx://` URIs (`uri=`).
//! - `trust` (with the `server` feature): fetching the server's
//!   thumbprint (`thumbprint=auto`, `no_verify=1`) and explaining a
//!   thumbprint mismatch at Open.
//!
//! ```
//! use vddk_nbd::params::{self, vddk_plugin};
//!
//! let args = ["libdir=/opt/vddk", "/srv/disk.vmdk"];
//! let pairs: Vec<(String, String)> = args.iter().map(|a| params::split_param(a)).collect();
//! let p = vddk_plugin::parse(&pairs)?;
//! vddk_plugin::validate(&p)?;
//! assert_eq!(p.file.as_deref(), Some("/srv/disk.vmdk"));
//! assert!(!p.is_remote());
//! # Ok::<(), params::ParamError>(())
//! ```

pub mod connect;
pub mod handover;
pub mod password;
pub mod size;
#[cfg(feature = "server")]
pub mod trust;
pub mod uri;
pub mod value;
pub mod vddk_plugin;

pub use password::{Password, Secrets};
pub use size::parse_size;
pub use value::{parse_bool, ParamError};
pub use vddk_plugin::VddkParams;

/// A parameter a layer (a plugin or a filter) takes, with its `--help` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamHelp {
    /// The key (`cow-block-size`).
    pub key: &'static str,
    /// The left column of the help line (`cow-block-size=<N>`).
    pub usage: &'static str,
    /// What it does.
    pub help: &'static str,
}

/// The `key=value` parameters given to one layer (a plugin or a filter).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// The pairs as given.
    pub fn new(pairs: Vec<(String, String)>) -> Params {
        Params(pairs)
    }

    /// The pairs, in order.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }

    /// The value of `key`; the last one given wins, as in nbdkit.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A boolean (nbdkit's spellings), or `default`.
    pub fn bool(&self, key: &str, default: bool) -> Result<bool, ParamError> {
        self.get(key)
            .map_or(Ok(default), |v| value::parse_bool(key, v))
    }

    /// A size (`64K`, `2M`), if given.
    pub fn size(&self, key: &str) -> Result<Option<u64>, ParamError> {
        self.get(key)
            .map(|v| parse_size(v).map_err(|e| ParamError(format!("{key}={v}: {e}"))))
            .transpose()
    }

    /// A whole number, if given.
    pub fn number(&self, key: &str) -> Result<Option<u64>, ParamError> {
        self.get(key)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| ParamError(format!("{key}={v}: expected a whole number")))
            })
            .transpose()
    }
}

/// Whether a command-line word is a `key=value` parameter, and if so its
/// two halves. A word whose part before `=` is empty, holds `/`, `[`,
/// `<` or white space is a path (`[datastore1] a=b/disk.vmdk`,
/// `/tmp/x=1.vmdk`, libvirt's `<source file='[ds] a/a.vmdk'/>` pasted with
/// its indentation), not a key.
pub fn as_pair(arg: &str) -> Option<(&str, &str)> {
    let path_like = |k: &str| k.contains(['/', '[', '<']) || k.contains(char::is_whitespace);
    match arg.split_once('=') {
        Some((k, v)) if !k.is_empty() && !path_like(k) => Some((k, v)),
        _ => None,
    }
}

/// A command-line word as a parameter: `key=value`, or a bare word taken
/// as `file=` (nbdkit lets the file be given without its key).
pub fn split_param(arg: &str) -> (String, String) {
    match as_pair(arg) {
        Some((k, v)) => (k.to_string(), v.to_string()),
        None => ("file".to_string(), arg.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_and_bare_files() {
        assert_eq!(as_pair("file=/a.vmdk"), Some(("file", "/a.vmdk")));
        assert_eq!(as_pair("password="), Some(("password", "")));
        assert_eq!(as_pair("/tmp/x=1.vmdk"), None);
        assert_eq!(as_pair("[ds] a=b/c.vmdk"), None);
        assert_eq!(as_pair("=x"), None);
        assert_eq!(as_pair("disk.vmdk"), None);
        assert_eq!(as_pair("      <source file='[ds] a/a.vmdk'/>"), None);
        assert_eq!(
            split_param("[ds1] vm/vm.vmdk"),
            ("file".to_string(), "[ds1] vm/vm.vmdk".to_string())
        );
    }
}
