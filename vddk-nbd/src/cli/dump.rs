//! `--dump-plugin`: the keys `nbdkit vddk --dump-plugin` prints, so that
//! scripts probing for VDDK (virt-v2v and the like) work unchanged. Like
//! nbdkit, it succeeds without VDDK: the keys that need the library are
//! left out, and why is said on stderr.

use std::io::Write;

use vddk_nbd::params::VddkParams;

/// Loads the library (no disk needed), prints the keys, returns the exit
/// status: 0 unless stdout cannot be written.
pub fn run(p: &VddkParams) -> i32 {
    let mut opts = vddk::InitOptions::new();
    if let Some(dir) = &p.libdir {
        opts = opts.libdir(dir);
    }
    if let Some(cfg) = &p.config {
        opts = opts.config_file(cfg);
    }
    let mut out = super::probes::plugin_fields(super::probes_vddk()).into_bytes();
    let _ = writeln!(out, "vddk_default_libdir={}", vddk_sys::DEFAULT_LIBDIR);
    let _ = writeln!(out, "vddk_has_nfchostport=1");
    match vddk::Vddk::init(opts) {
        Ok(vddk) => {
            let _ = write_keys(&mut out, &vddk);
        }
        Err(e) => eprintln!(
            "{}: warning: VDDK was not loaded, so the keys that describe it are left out: {e}",
            super::program()
        ),
    }
    super::print(&String::from_utf8_lossy(&out))
}

/// The keys that describe the loaded library.
fn write_keys(out: &mut impl Write, vddk: &vddk::Vddk) -> std::io::Result<()> {
    writeln!(out, "vddk_library_version={}", vddk.major_version())?;
    writeln!(out, "vddk_dll={}", vddk.library_path().display())?;
    writeln!(out, "vddk_transport_modes={}", vddk.transport_modes())?;
    for name in vddk_sys::REQUIRED_FUNCTIONS {
        writeln!(out, "{name}=1")?;
    }
    for (name, present) in vddk.capabilities().iter() {
        if present {
            writeln!(out, "{name}=1")?;
        }
    }
    Ok(())
}
