//! The bottom layers of an export, which hold its data: a VMware disk
//! through VDDK, a local file, memory, or nothing at all (`null`).

pub(crate) mod allocation;
pub mod file;
mod memory;
mod null;
mod vddk_disk;

pub use file::FileBackend;
pub use memory::MemoryBackend;
pub use null::NullBackend;
pub use vddk_disk::VddkDisk;

use crate::params::ParamHelp;

/// What the command line and the probes know of a plugin.
#[derive(Debug)]
pub struct PluginInfo {
    /// Its name, as the command line takes it.
    pub name: &'static str,
    /// What it serves, as `--help` shows it.
    pub description: &'static str,
    /// The key a bare word on the command line stands for.
    pub magic_key: &'static str,
    /// The parameters it takes.
    pub params: &'static [ParamHelp],
}

/// Plugins are the same when their names are.
impl PartialEq for PluginInfo {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for PluginInfo {}

/// Every plugin this server has, `vddk` first (the default).
pub const PLUGINS: &[PluginInfo] = &[
    PluginInfo {
        name: "vddk",
        description: "VMware VDDK plugin",
        magic_key: "file",
        params: crate::params::vddk_plugin::PARAMS,
    },
    PluginInfo {
        name: "file",
        description: "nbdkit file plugin",
        magic_key: "file",
        params: &[
            ParamHelp {
                key: "file",
                usage: "[file=]<FILENAME>",
                help: "The filename to serve.",
            },
            ParamHelp {
                key: "dir",
                usage: "dir=<DIRNAME>",
                help: "The directory to serve, a file per export name.",
            },
            ParamHelp {
                key: "cache",
                usage: "cache=<MODE>",
                help: "Set use of caching (default, none).",
            },
            ParamHelp {
                key: "fadvise",
                usage: "fadvise=<LEVEL>",
                help: "Set fadvise hint (normal, random, sequential).",
            },
        ],
    },
    PluginInfo {
        name: "null",
        description: "nbdkit null plugin",
        magic_key: "size",
        params: &[ParamHelp {
            key: "size",
            usage: "[size=]<SIZE>",
            help: "Size of the backing disk (default 0).",
        }],
    },
    PluginInfo {
        name: "memory",
        description: "nbdkit memory plugin",
        magic_key: "size",
        params: &[ParamHelp {
            key: "size",
            usage: "[size=]<SIZE>",
            help: "Size of RAM disk (required).",
        }],
    },
];

/// The plugin called `name`.
pub fn find(name: &str) -> Option<&'static PluginInfo> {
    PLUGINS.iter().find(|p| p.name == name)
}
