//! `vddk-copy`: a disk (local or remote) to a raw image, or a raw image
//! into a disk, reading only allocated blocks, with many requests in
//! flight, a progress bar, resume and an optional SHA-256.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::Instant;

use vddk::{DiskWorker, WorkerOptions};
use vddk_examples::args::{Flag, Parsed, Program};
use vddk_examples::copy::{self, CopyOptions, CopyReport, StateFile};
use vddk_examples::{session, units};
use vddk_nbd::config::VddkParams;

const PROGRAM: Program = Program {
    name: "vddk-copy",
    usage: "  vddk-copy [OPTIONS] --output FILE [CONNECTION-PARAMETERS...] [file=]DISK
  vddk-copy [OPTIONS] --from-raw FILE [CONNECTION-PARAMETERS...] [file=]DISK",
    about: "Copies a disk into a raw image (--output), reading only its allocated blocks and \
            leaving the rest as holes, or a raw image into an existing disk (--from-raw). \
            Requests are pipelined (--queue-depth at once). A progress bar is drawn when stderr \
            is a terminal. The copy records how far it got in a state file as it goes, so an \
            interrupted copy continues with --resume.",
    flags: &[
        Flag {
            long: "output",
            short: Some('o'),
            value: Some("FILE"),
            help: "write the disk to this raw image file",
        },
        Flag {
            long: "from-raw",
            short: None,
            value: Some("FILE"),
            help: "write this raw image into the disk instead",
        },
        Flag {
            long: "format",
            short: None,
            value: Some("raw"),
            help: "output format: raw (the only one; unallocated blocks stay holes)",
        },
        Flag {
            long: "request-size",
            short: None,
            value: Some("SIZE"),
            help: "bytes per request (default 1M; VMware advises at most 2M for nbdssl)",
        },
        Flag {
            long: "queue-depth",
            short: None,
            value: Some("N"),
            help: "requests in flight at once (default 16)",
        },
        Flag {
            long: "resume",
            short: None,
            value: None,
            help: "continue an interrupted copy from its state file",
        },
        Flag {
            long: "resume-from",
            short: None,
            value: Some("BYTES"),
            help: "continue from this byte offset (a multiple of 512)",
        },
        Flag {
            long: "state",
            short: None,
            value: Some("FILE"),
            help: "the state file (default: the local file's name + .vddk-copy-state)",
        },
        Flag {
            long: "checksum",
            short: None,
            value: Some("sha256"),
            help: "print the SHA-256 of the whole image",
        },
        Flag {
            long: "no-progress",
            short: None,
            value: None,
            help: "never draw the progress bar",
        },
    ],
    notes: "Examples:
  vddk-copy libdir=/opt/vddk /vms/web.vmdk --output web.img --checksum sha256
  vddk-copy libdir=/opt/vddk server=vc user=u password=- thumbprint=... vm=moref=vm-16 \\
      '[datastore1] web/web.vmdk' -o web.img
  vddk-copy --resume libdir=/opt/vddk /vms/web.vmdk -o web.img
  vddk-copy libdir=/opt/vddk /vms/new.vmdk --from-raw web.img
",
};

fn main() {
    vddk_examples::run_program(&PROGRAM, copy_main)
}

enum Direction {
    ToFile(PathBuf),
    FromRaw(PathBuf),
}

fn direction(args: &Parsed) -> Result<Direction, String> {
    match (args.value("output"), args.value("from-raw")) {
        (Some(o), None) => Ok(Direction::ToFile(o.into())),
        (None, Some(r)) => Ok(Direction::FromRaw(r.into())),
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

fn options(args: &Parsed) -> Result<CopyOptions, String> {
    let mut o = CopyOptions::default();
    if let Some(f) = args.value("format") {
        if f != "raw" {
            return Err(format!("--format {f}: only raw is supported"));
        }
    }
    if let Some(v) = args.value("request-size") {
        o.request_bytes = units::parse_size("--request-size", v)?;
        if o.request_bytes == 0 || o.request_bytes % 512 != 0 || o.request_bytes > 64 << 20 {
            return Err(format!(
                "--request-size {v}: use a multiple of 512 bytes between 512 and 64M"
            ));
        }
    }
    if let Some(v) = args.value("queue-depth") {
        o.queue_depth = v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1024).contains(n))
            .ok_or_else(|| format!("--queue-depth {v}: use a number from 1 to 1024"))?;
    }
    if let Some(v) = args.value("resume-from") {
        o.resume_from = units::parse_size("--resume-from", v)?;
    }
    if let Some(c) = args.value("checksum") {
        if !c.eq_ignore_ascii_case("sha256") {
            return Err(format!("--checksum {c}: only sha256 is supported"));
        }
        o.checksum = true;
    }
    o.progress = !args.has("no-progress");
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

fn copy_main(args: &Parsed) -> Result<(), String> {
    let params = args.params()?;
    let dir = direction(args)?;
    let mut opts = options(args)?;
    if args.has("resume") && args.has("resume-from") {
        return Err("--resume reads the offset from the state file; drop --resume-from".into());
    }
    let to_file = matches!(dir, Direction::ToFile(_));
    let sess = session::open(&params, to_file)?;
    let worker = DiskWorker::spawn(
        sess.disk,
        WorkerOptions::new().max_in_flight(opts.queue_depth),
    )
    .map_err(|e| format!("cannot start the disk worker: {e}"))?;
    let local = match &dir {
        Direction::ToFile(f) | Direction::FromRaw(f) => f.clone(),
    };
    let state_path = args
        .value("state")
        .map(PathBuf::from)
        .unwrap_or_else(|| copy::default_state_path(&local));
    let started = Instant::now();
    let report = match &dir {
        Direction::ToFile(out) => {
            let total = worker.info().capacity_bytes();
            let state = StateFile {
                path: state_path,
                id: copy_id(&params, &sess.path, &dir),
                total,
            };
            if args.has("resume") {
                opts.resume_from = state.load()?;
            }
            let file = open_output(out, opts.resume_from > 0)?;
            opts.state = Some(state);
            copy::disk_to_file(&worker, &file, &opts).map_err(|e| e.to_string())?
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
            if args.has("resume") {
                opts.resume_from = state.load()?;
            }
            opts.state = Some(state);
            copy::file_to_disk(&worker, &file, len, &opts).map_err(|e| e.to_string())?
        }
    };
    worker
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
