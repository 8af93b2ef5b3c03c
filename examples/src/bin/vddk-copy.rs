//! `vddk-copy`: a disk (local or remote) to a raw image, or a raw image
//! into a disk, reading only allocated blocks, with many requests in
//! flight, a progress bar, resume and an optional SHA-256.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::Instant;

use vddk::DiskDriver;
use vddk_examples::cli;
use vddk_examples::copy::{self, CopyOptions, CopyReport, StateFile};
use vddk_examples::{session, units};
use vddk_nbd::params::VddkParams;

vddk_examples::program! {
    #[command(
        name = "vddk-copy",
        override_usage = "vddk-copy [OPTIONS] --output FILE [CONNECTION-PARAMETERS...] [file=]DISK
       vddk-copy [OPTIONS] --from-raw FILE [CONNECTION-PARAMETERS...] [file=]DISK",
        about = "Copies a disk into a raw image (--output), reading only its allocated blocks and \
                 leaving the rest as holes, or a raw image into an existing disk (--from-raw). \
                 Requests are pipelined (--queue-depth at once). Progress goes to stderr: a bar on \
                 a terminal, otherwise a plain line at every tenth of the copy (or every 30 \
                 seconds). The copy records how far it got in a state file as it goes, so an \
                 interrupted copy continues with --resume.",
        after_help = cli::after_help(EXAMPLES)
    )]
    struct Args {
        /// Write the disk to this raw image file
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,

        /// Write this raw image into the disk instead
        #[arg(long, value_name = "FILE")]
        from_raw: Option<PathBuf>,

        /// Output format: raw (the only one; unallocated blocks stay holes)
        #[arg(long, value_name = "raw", default_value = "raw")]
        format: String,

        /// Bytes per request (VMware advises at most 2M for nbdssl)
        #[arg(long, value_name = "SIZE", default_value = "1M")]
        request_size: String,

        /// Requests in flight at once
        #[arg(long, value_name = "N", default_value = "16")]
        queue_depth: String,

        /// Continue an interrupted copy from its state file
        #[arg(long)]
        resume: bool,

        /// Continue from this byte offset (a multiple of 512)
        #[arg(long, value_name = "BYTES")]
        resume_from: Option<String>,

        /// The state file [default: the local file's name + .vddk-copy-state]
        #[arg(long, value_name = "FILE")]
        state: Option<PathBuf>,

        /// Print the SHA-256 of the whole image
        #[arg(long, value_name = "sha256")]
        checksum: Option<String>,

        /// Show no progress at all
        #[arg(long)]
        no_progress: bool,
    }
}

const EXAMPLES: &str =
    "  vddk-copy libdir=/opt/vddk /vms/web.vmdk --output web.img --checksum sha256
  vddk-copy libdir=/opt/vddk server=vc user=u password=- thumbprint=... vm=moref=vm-16 \\
      '[datastore1] web/web.vmdk' -o web.img
  vddk-copy --resume libdir=/opt/vddk /vms/web.vmdk -o web.img
  vddk-copy libdir=/opt/vddk /vms/new.vmdk --from-raw web.img
";

fn main() {
    vddk_examples::run_program(copy_main)
}

enum Direction {
    ToFile(PathBuf),
    FromRaw(PathBuf),
}

fn direction(args: &Args) -> Result<Direction, String> {
    match (&args.output, &args.from_raw) {
        (Some(o), None) => Ok(Direction::ToFile(o.clone())),
        (None, Some(r)) => Ok(Direction::FromRaw(r.clone())),
        (Some(_), Some(_)) => {
            Err("--output and --from-raw go in opposite directions: give one of them".into())
        }
        (None, None) => Err(
            "say where to copy: --output FILE (disk to raw image) or --from-raw FILE (raw \
             image into the disk)"
                .into(),
        ),
    }
}

fn options(args: &Args) -> Result<CopyOptions, String> {
    let mut o = CopyOptions::default();
    if args.format != "raw" {
        return Err(format!("--format {}: only raw is supported", args.format));
    }
    let v = &args.request_size;
    o.request_bytes = units::parse_size("--request-size", v)?;
    if o.request_bytes == 0 || o.request_bytes % 512 != 0 || o.request_bytes > 64 << 20 {
        return Err(format!(
            "--request-size {v}: use a multiple of 512 bytes between 512 and 64M"
        ));
    }
    let v = &args.queue_depth;
    o.queue_depth = v
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=1024).contains(n))
        .ok_or_else(|| format!("--queue-depth {v}: use a number from 1 to 1024"))?;
    if let Some(v) = &args.resume_from {
        o.resume_from = units::parse_size("--resume-from", v)?;
    }
    if let Some(c) = &args.checksum {
        if !c.eq_ignore_ascii_case("sha256") {
            return Err(format!("--checksum {c}: only sha256 is supported"));
        }
        o.checksum = true;
    }
    o.progress = !args.no_progress;
    Ok(o)
}

fn copy_id(p: &VddkParams, disk: &str, dir: &Direction) -> String {
    let src = match &p.server {
        Some(s) => format!("{s}:{disk}"),
        None => disk.to_string(),
    };
    match dir {
        Direction::ToFile(f) => format!("{src} -> {}", f.display()),
        Direction::FromRaw(f) => format!("{} -> {src}", f.display()),
    }
}

fn copy_main(args: &Args) -> Result<(), String> {
    let params = args.common.params()?;
    let dir = direction(args)?;
    let mut opts = options(args)?;
    if args.resume && args.resume_from.is_some() {
        return Err("--resume reads the offset from the state file; drop --resume-from".into());
    }
    let to_file = matches!(dir, Direction::ToFile(_));
    let sess = session::open(&params, to_file)?;
    // A lost connection is made again and the copy carries on (remote
    // disks: a local file has no connection to lose).
    let driver_opts = session::driver_options(&params, opts.queue_depth)
        .reopen_with(sess.reopen.clone())
        .reconnect(vddk::Reconnect::new().standby(true));
    let driver: DiskDriver = DiskDriver::new(sess.disk, driver_opts)
        .map_err(|e| format!("cannot start the disk driver: {e}"))?;
    let local = match &dir {
        Direction::ToFile(f) | Direction::FromRaw(f) => f.clone(),
    };
    let state_path = args
        .state
        .clone()
        .unwrap_or_else(|| copy::default_state_path(&local));
    let started = Instant::now();
    let report = match &dir {
        Direction::ToFile(out) => {
            let total = driver.capacity();
            let state = StateFile {
                path: state_path,
                id: copy_id(&params, &sess.path, &dir),
                total,
            };
            if args.resume {
                opts.resume_from = state.load()?;
            }
            let file = open_output(out, opts.resume_from > 0)?;
            opts.state = Some(state);
            copy::disk_to_file(&driver, &file, &opts).map_err(|e| e.to_string())?
        }
        Direction::FromRaw(raw) => {
            let file = File::open(raw)
                .map_err(|e| format!("cannot open the raw image {}: {e}", raw.display()))?;
            let len = file
                .metadata()
                .map_err(|e| format!("cannot stat {}: {e}", raw.display()))?
                .len();
            let state = StateFile {
                path: state_path,
                id: copy_id(&params, &sess.path, &dir),
                total: len.div_ceil(512) * 512,
            };
            if args.resume {
                opts.resume_from = state.load()?;
            }
            opts.state = Some(state);
            copy::file_to_disk(&driver, &file, len, &opts).map_err(|e| e.to_string())?
        }
    };
    let reconnections = driver.reconnections();
    driver
        .close()
        .map_err(|e| format!("closing {}: {e}", sess.path))?;
    print_report(
        &report,
        &sess.path,
        &local,
        to_file,
        started,
        opts.resume_from,
    );
    if reconnections > 0 {
        println!("the connection was lost and made again {reconnections} times");
    }
    Ok(())
}

fn open_output(path: &Path, resuming: bool) -> Result<File, String> {
    let mut o = OpenOptions::new();
    o.read(true).write(true).create(true);
    if !resuming {
        o.truncate(true);
    } else if !path.exists() {
        return Err(format!(
            "cannot resume: {} does not exist; start the copy again without --resume",
            path.display()
        ));
    }
    o.open(path)
        .map_err(|e| format!("cannot open {} for writing: {e}", path.display()))
}

fn print_report(
    r: &CopyReport,
    disk: &str,
    local: &Path,
    to_file: bool,
    started: Instant,
    resumed_at: u64,
) {
    let elapsed = started.elapsed();
    let (from, to) = if to_file {
        (disk.to_string(), local.display().to_string())
    } else {
        (local.display().to_string(), disk.to_string())
    };
    println!("copied {from} -> {to}");
    println!(
        "size: {} bytes; this run: {} bytes transferred, {} bytes skipped{} in {:.2}s ({})",
        r.total,
        r.transferred,
        r.skipped,
        if resumed_at > 0 {
            format!(", resumed at byte {resumed_at}")
        } else {
            String::new()
        },
        elapsed.as_secs_f64(),
        units::rate(r.transferred, elapsed)
    );
    if let Some(h) = &r.sha256 {
        println!("sha256: {h}");
    }
}
