//! `vddk-bench`: sequential and random read/write benchmark of one disk
//! at chosen request sizes and queue depths (like the -readbench and
//! -writebench of VMware's sample program).

use std::time::Duration;

use vddk::{DiskWorker, WorkerOptions};
use vddk_examples::args::{Flag, Parsed, Program};
use vddk_examples::bench::{self, Mode, Outcome, Run};
use vddk_examples::json::{self, Object};
use vddk_examples::{session, units};

const PROGRAM: Program = Program {
    name: "vddk-bench",
    usage: "  vddk-bench [OPTIONS] [CONNECTION-PARAMETERS...] [file=]DISK",
    about: "Measures one disk: for every combination of --mode, --request-size and \
            --queue-depth, keeps that many requests in flight until --total bytes or \
            --duration, and prints MB/s (10^6 bytes per second) and the latency percentiles \
            p50, p90 and p99. Write runs include a final flush.",
    flags: &[
        Flag {
            long: "mode",
            short: Some('m'),
            value: Some("MODES"),
            help: "comma list of read, write, randread, randwrite (default read)",
        },
        Flag {
            long: "request-size",
            short: Some('b'),
            value: Some("SIZES"),
            help: "comma list of request sizes (default 64K)",
        },
        Flag {
            long: "queue-depth",
            short: Some('q'),
            value: Some("DEPTHS"),
            help: "comma list of requests in flight (default 1,8)",
        },
        Flag {
            long: "total",
            short: None,
            value: Some("SIZE"),
            help: "bytes per run (default 256M)",
        },
        Flag {
            long: "duration",
            short: None,
            value: Some("SECONDS"),
            help: "longest time per run (default 10)",
        },
        Flag {
            long: "seed",
            short: None,
            value: Some("N"),
            help: "seed of the random offsets (default 1)",
        },
        Flag {
            long: "allow-writes",
            short: None,
            value: None,
            help: "needed for write modes: they overwrite the disk's data",
        },
        Flag {
            long: "json",
            short: None,
            value: None,
            help: "print a JSON array of results instead of a table",
        },
    ],
    notes: "Examples:
  vddk-bench libdir=/opt/vddk /vms/web.vmdk -m read,randread -b 4K,64K,1M -q 1,16
  vddk-bench libdir=/opt/vddk /vms/scratch.vmdk -m write --allow-writes --total 1G
",
};

fn main() {
    vddk_examples::run_program(&PROGRAM, bench_main)
}

fn list_or<T>(
    args: &Parsed,
    flag: &str,
    default: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Vec<T>, String> {
    let mut items = args.list(flag);
    if items.is_empty() {
        items = default.split(',').collect();
    }
    items.into_iter().map(parse).collect()
}

fn bench_main(args: &Parsed) -> Result<(), String> {
    let modes = list_or(args, "mode", "read", Mode::parse)?;
    let sizes = list_or(args, "request-size", "64K", |s| {
        let n = units::parse_size("--request-size", s)?;
        if n == 0 || n % 512 != 0 || n > 64 << 20 {
            return Err(format!(
                "--request-size {s}: use a multiple of 512 bytes between 512 and 64M"
            ));
        }
        Ok(n)
    })?;
    let depths = list_or(args, "queue-depth", "1,8", |s| {
        s.parse::<usize>()
            .ok()
            .filter(|n| (1..=1024).contains(n))
            .ok_or_else(|| format!("--queue-depth {s}: use numbers from 1 to 1024"))
    })?;
    let total = match args.value("total") {
        Some(v) => units::parse_size("--total", v)?,
        None => 256 << 20,
    };
    let duration = match args.value("duration") {
        Some(v) => v
            .parse::<f64>()
            .ok()
            .filter(|s| *s > 0.0 && s.is_finite())
            .map(Duration::from_secs_f64)
            .ok_or_else(|| format!("--duration {v}: give a positive number of seconds"))?,
        None => Duration::from_secs(10),
    };
    let seed = match args.value("seed") {
        Some(v) => v
            .parse::<u64>()
            .map_err(|_| format!("--seed {v}: give a whole number"))?,
        None => 1,
    };
    let writes = modes.iter().any(|m| m.writes());
    if writes && !args.has("allow-writes") {
        return Err(
            "write modes overwrite the disk's data: add --allow-writes if that is intended".into(),
        );
    }
    let params = args.params()?;
    let sess = session::open(&params, !writes)?;
    let transport = sess.disk.transport_mode();
    let max_depth = depths.iter().copied().max().unwrap_or(1);
    let worker = DiskWorker::spawn(sess.disk, WorkerOptions::new().max_in_flight(max_depth))
        .map_err(|e| format!("cannot start the disk worker: {e}"))?;
    let json_out = args.has("json");
    if !json_out {
        println!(
            "disk: {} ({} bytes, transport {transport})",
            sess.path,
            worker.info().capacity_bytes(),
        );
        println!(
            "{:<10} {:>8} {:>5} {:>8} {:>10} {:>10} {:>10} {:>10}",
            "mode", "request", "depth", "ops", "MB/s", "p50(us)", "p90(us)", "p99(us)"
        );
    }
    let mut results = Vec::new();
    for &mode in &modes {
        for &request in &sizes {
            for &depth in &depths {
                let r = Run {
                    mode,
                    request,
                    depth,
                    total,
                    duration,
                    seed,
                };
                let out = bench::run(&worker, &r).map_err(|e| {
                    format!(
                        "{} with {}-byte requests at depth {depth}: {e}",
                        mode.name(),
                        request
                    )
                })?;
                if json_out {
                    results.push(result_json(&r, &out));
                } else {
                    println!("{}", result_row(&r, &out));
                }
            }
        }
    }
    if json_out {
        println!("{}", json::array(results));
    }
    worker
        .close()
        .map_err(|e| format!("closing {}: {e}", sess.path))
}

fn micros(d: Duration) -> u128 {
    d.as_micros()
}

fn result_row(r: &Run, o: &Outcome) -> String {
    format!(
        "{:<10} {:>8} {:>5} {:>8} {:>10.2} {:>10} {:>10} {:>10}",
        r.mode.name(),
        units::size_label(r.request),
        r.depth,
        o.ops,
        o.mb_per_sec(),
        micros(o.percentile(50.0)),
        micros(o.percentile(90.0)),
        micros(o.percentile(99.0)),
    )
}

fn result_json(r: &Run, o: &Outcome) -> String {
    let mut j = Object::new();
    j.str("mode", r.mode.name())
        .num("request_bytes", r.request)
        .num("queue_depth", r.depth)
        .num("ops", o.ops)
        .num("bytes", o.bytes)
        .num("seconds", format!("{:.6}", o.elapsed.as_secs_f64()))
        .num("mb_per_sec", format!("{:.3}", o.mb_per_sec()))
        .num("p50_us", micros(o.percentile(50.0)))
        .num("p90_us", micros(o.percentile(90.0)))
        .num("p99_us", micros(o.percentile(99.0)));
    j.finish()
}
