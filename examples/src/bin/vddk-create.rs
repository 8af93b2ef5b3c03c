//! `vddk-create`: creates a local disk (VixDiskLib_Create) and optionally
//! fills it from a raw image.

use std::fs::File;

use vddk::DiskDriver;
use vddk_examples::cli;
use vddk_examples::copy::{self, CopyOptions};
use vddk_examples::{session, units};
use vddk_nbd::params::connect::{create_params, open_flags};

vddk_examples::program! {
    #[command(
        name = "vddk-create",
        override_usage = "vddk-create [OPTIONS] --size SIZE [libdir=DIR] [file=]/ABSOLUTE/PATH.vmdk",
        about = "Creates a local VMware disk of the given size, type, adapter and virtual hardware \
                 version, and optionally copies a raw image into it (zero blocks are skipped, so a \
                 sparse disk stays sparse).",
        after_help = cli::after_help(EXAMPLES)
    )]
    struct Args {
        /// Virtual size, a multiple of 512 (e.g. 10G, 512M) [default: the --fill-from file's
        /// size]
        #[arg(short, long, value_name = "SIZE")]
        size: Option<String>,

        /// monolithic-sparse (sparse), monolithic-flat (flat), split-sparse, split-flat,
        /// vmfs-flat, vmfs-thin (thin), vmfs-sparse, stream-optimized
        #[arg(
            short = 't',
            long = "type",
            value_name = "TYPE",
            default_value = "monolithic-sparse"
        )]
        disk_type: String,

        /// ide, buslogic or lsilogic
        #[arg(short, long, value_name = "ADAPTER", default_value = "buslogic")]
        adapter: String,

        /// Virtual hardware version: a number or workstation4/5/6, esx30, esx4x, esx50, esx51,
        /// esx55, esx60, esx65 (workstation5 is 4)
        #[arg(long, value_name = "VERSION", default_value = "workstation5")]
        hw_version: String,

        /// Copy this raw image into the new disk
        #[arg(long, value_name = "RAW")]
        fill_from: Option<String>,
    }
}

const EXAMPLES: &str = "  vddk-create libdir=/opt/vddk --size 10G /vms/new.vmdk
  vddk-create libdir=/opt/vddk --type flat --adapter lsilogic --hw-version esx65 --size 1G /vms/f.vmdk
  vddk-create libdir=/opt/vddk --fill-from disk.img /vms/from-raw.vmdk
";

fn main() {
    vddk_examples::run_program(create_main)
}

/// The flags as `vddk-nbd`'s `create=true` parameters, so one parser
/// checks them; short names map to the long ones.
fn create_pairs(args: &Args, fill_len: Option<u64>) -> Result<Vec<(String, String)>, String> {
    let mut pairs = args.common.pairs();
    let size = match (&args.size, fill_len) {
        (Some(s), _) => units::parse_size("--size", s)?,
        (None, Some(len)) => len.div_ceil(512) * 512,
        (None, None) => {
            return Err("give the disk's size with --size SIZE (e.g. --size 10G)".into());
        }
    };
    pairs.push(("create".into(), "true".into()));
    pairs.push(("create-size".into(), size.to_string()));
    let t = match args.disk_type.as_str() {
        "sparse" => "monolithic-sparse",
        "flat" => "monolithic-flat",
        "thin" => "vmfs-thin",
        other => other,
    };
    pairs.push(("create-type".into(), t.into()));
    let a = match args.adapter.as_str() {
        "buslogic" => "scsi-buslogic",
        "lsilogic" => "scsi-lsilogic",
        other => other,
    };
    pairs.push(("create-adapter-type".into(), a.into()));
    pairs.push(("create-hwversion".into(), args.hw_version.clone()));
    Ok(pairs)
}

fn create_main(args: &Args) -> Result<(), String> {
    let fill = match &args.fill_from {
        Some(path) => {
            let f =
                File::open(path).map_err(|e| format!("cannot open the raw image {path}: {e}"))?;
            let len = f
                .metadata()
                .map_err(|e| format!("cannot stat {path}: {e}"))?
                .len();
            Some((path.to_string(), f, len))
        }
        None => None,
    };
    let pairs = create_pairs(args, fill.as_ref().map(|f| f.2))?;
    let params = vddk_nbd::params::vddk_plugin::parse(&pairs).map_err(|e| e.to_string())?;
    session::validate(&params)?;
    let Some(create) = params.create else {
        return Err("internal error: no create options".into());
    };
    let path = params.file.clone().unwrap_or_default();
    if let Some((raw, _, len)) = &fill {
        if *len > create.size {
            return Err(format!(
                "{raw} holds {len} bytes, more than --size {}: give a larger --size, or none \
                 to use the image's size",
                create.size
            ));
        }
    }
    let lib = session::load(&params)?;
    let conn = session::connect(&lib, &params, false)?;
    let cp = create_params(&create);
    conn.create(&path, &cp)
        .map_err(|e| format!("cannot create {path}: {e}"))?;
    println!(
        "created {path}: {}, {} bytes, adapter {}, hardware version {}",
        create.disk_type.nbdkit_name(),
        create.size,
        create.adapter,
        create.hw_version.0
    );
    if let Some((raw, file, len)) = fill {
        let disk = conn
            .open(
                &path,
                open_flags(&params, false).map_err(|e| e.to_string())?,
            )
            .map_err(|e| format!("cannot open the new disk {path}: {e}"))?;
        let opts = CopyOptions::default();
        let driver: DiskDriver =
            DiskDriver::new(disk, session::driver_options(&params, opts.queue_depth))
                .map_err(|e| format!("cannot start the disk driver: {e}"))?;
        let r = copy::file_to_disk(&driver, &file, len, &opts).map_err(|e| e.message)?;
        driver.close().map_err(|e| format!("closing {path}: {e}"))?;
        println!(
            "filled from {raw}: {} bytes written, {} bytes of zeroes skipped",
            r.transferred, r.skipped
        );
    }
    Ok(())
}
