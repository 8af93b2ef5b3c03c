//! `multi-conn`: decides whether the export advertises multi-conn
//! consistency (a flush on one connection covers writes made on every
//! connection).
//!
//! Every connection to an export here shares one backend (one VDDK handle,
//! one cow overlay), so a flush through any connection already reaches
//! every write: `emulate` needs no flush replication and advertises, as
//! `unsafe` does. `disable` never advertises (what virt-v2v asks for),
//! `plugin` passes the layer below's answer through, and `auto` (the
//! default) advertises. `multi-conn-track-dirty` and
//! `multi-conn-exportname` are accepted and change nothing, for the same
//! reason.

use std::sync::Arc;

use super::{Filter, FilterInfo, FilterSpec, Layer, ParamHelp};
use crate::backend::{Backend, Caps, Error};
use crate::params::{value::lookup, ParamError, Params};

/// The filter's table entry.
pub const INFO: FilterInfo = FilterInfo {
    name: "multi-conn",
    description: "enable or emulate multi-conn",
    params: &[
        ParamHelp {
            key: "multi-conn-mode",
            usage: "multi-conn-mode=<MODE>",
            help: "'auto' (default), 'emulate', 'plugin', 'disable', or 'unsafe'.",
        },
        ParamHelp {
            key: "multi-conn-track-dirty",
            usage: "multi-conn-track-dirty=<LEVEL>",
            help: "'conn' (default), 'fast', or 'off' (no effect here).",
        },
        ParamHelp {
            key: "multi-conn-exportname",
            usage: "multi-conn-exportname=<BOOL>",
            help: "true to limit emulation by export name (no effect here).",
        },
    ],
    configure,
};

/// `multi-conn-mode=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Advertise (connections share one backend).
    Auto,
    /// Advertise, flushes reaching every connection's writes.
    Emulate,
    /// Whatever the layer below says.
    Plugin,
    /// Never advertise.
    Disable,
    /// Always advertise.
    Unsafe,
}

const MODES: &[(&str, Mode)] = &[
    ("auto", Mode::Auto),
    ("emulate", Mode::Emulate),
    ("plugin", Mode::Plugin),
    ("disable", Mode::Disable),
    ("unsafe", Mode::Unsafe),
];

fn configure(p: &Params) -> Result<Arc<dyn FilterSpec>, ParamError> {
    let mode = match p.get("multi-conn-mode") {
        Some(v) => lookup("multi-conn-mode", v, MODES)?,
        None => Mode::Auto,
    };
    if let Some(v) = p.get("multi-conn-track-dirty") {
        lookup(
            "multi-conn-track-dirty",
            v,
            &[("conn", ()), ("connection", ()), ("fast", ()), ("off", ())],
        )?;
    }
    p.bool("multi-conn-exportname", false)?;
    Ok(Arc::new(MultiConn(mode)))
}

#[derive(Clone, Copy)]
struct MultiConn(Mode);

impl FilterSpec for MultiConn {
    fn name(&self) -> &'static str {
        INFO.name
    }
    fn open(&self, next: Arc<dyn Backend>, _export: &str) -> Result<Arc<dyn Backend>, Error> {
        Ok(Arc::new(Layer::new(*self, next)))
    }
}

impl Filter for MultiConn {
    fn caps(&self, below: Caps) -> Caps {
        let mut caps = below;
        caps.features.multi_conn = match self.0 {
            Mode::Disable => false,
            Mode::Plugin => below.features.multi_conn,
            Mode::Auto | Mode::Emulate | Mode::Unsafe => true,
        };
        caps
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filters::testing::{memory, params};

    #[test]
    fn modes_decide_what_is_advertised() {
        for (mode, want) in [
            ("disable", false),
            ("auto", true),
            ("unsafe", true),
            ("emulate", true),
            ("plugin", true),
        ] {
            let spec = configure(&params(&[("multi-conn-mode", mode)])).unwrap();
            let top = spec.open(memory(4096), "").unwrap();
            assert_eq!(top.caps().features.multi_conn, want, "{mode}");
        }
        let e = configure(&params(&[("multi-conn-mode", "sometimes")]))
            .err()
            .unwrap();
        assert!(
            e.0.contains("auto, emulate, plugin, disable, unsafe"),
            "{e}"
        );
        assert!(configure(&params(&[("multi-conn-track-dirty", "fast")])).is_ok());
        assert!(configure(&params(&[("multi-conn-track-dirty", "maybe")])).is_err());
    }
}
