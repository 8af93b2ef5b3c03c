//! `--dump-plugin`: the keys `nbdkit vddk --dump-plugin` prints, so that
//! scripts probing for VDDK (virt-v2v and the like) work unchanged.

use std::io::Write;

use vddk_nbd::params::VddkParams;

/// Loads the library (no disk needed), prints the keys, returns the exit
/// status.
pub fn run(p: &VddkParams) -> i32 {
    let mut opts = vddk::InitOptions::new();
    if let Some(dir) = &p.libdir {
        opts = opts.libdir(dir);
    }
    if let Some(cfg) = &p.config {
        opts = opts.config_file(cfg);
    }
    let vddk = match vddk::Vddk::init(opts) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("vddk-nbd: error: {e}");
            return 1;
        }
    };
    let mut out = Vec::new();
    let _ = write_keys(&mut out, &vddk);
    let mut stdout = std::io::stdout().lock();
    if stdout
        .write_all(&out)
        .and_then(|()| stdout.flush())
        .is_err()
    {
        return 1;
    }
    0
}

fn write_keys(out: &mut impl Write, vddk: &vddk::Vddk) -> std::io::Result<()> {
    writeln!(out, "name=vddk")?;
    writeln!(out, "version={}", env!("CARGO_PKG_VERSION"))?;
    writeln!(out, "magic_config_key=file")?;
    writeln!(out, "thread_model=parallel")?;
    writeln!(out, "vddk_default_libdir={}", vddk_sys::DEFAULT_LIBDIR)?;
    writeln!(out, "vddk_has_nfchostport=1")?;
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
