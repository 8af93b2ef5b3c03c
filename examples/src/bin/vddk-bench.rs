//! `vddk-bench`: sequential and random read/write benchmark of one disk
//! at chosen request sizes and queue depths (like the -readbench and
//! -writebench of VMware's sample program).

use std::time::Duration;

use serde::Serialize;
use vddk::DiskDriver;
use vddk_examples::bench::{self, Mode, Outcome, Run};
use vddk_examples::cli;
use vddk_examples::{session, units};

vddk_examples::program! {
    #[command(
        name = "vddk-bench",
        override_usage = "vddk-bench [OPTIONS] [CONNECTION-PARAMETERS...] [file=]DISK",
        about = "Measures one disk: for every combination of --mode, --request-size and \
                 --queue-depth, keeps that many requests in flight until --total bytes or \
                 --duration, and prints MB/s (10^6 bytes per second) and the latency percentiles \
                 p50, p90 and p99. Write runs include a final flush.",
        after_help = cli::after_help(EXAMPLES)
    )]
    struct Args {
        /// Comma list of read, write, randread, randwrite
        #[arg(
            short,
            long,
            value_name = "MODES",
            value_delimiter = ',',
            default_value = "read"
        )]
        mode: Vec<String>,

        /// Comma list of request sizes
        #[arg(
            short = 'b',
            long,
            value_name = "SIZES",
            value_delimiter = ',',
            default_value = "64K"
        )]
        request_size: Vec<String>,

        /// Comma list of requests in flight
        #[arg(
            short,
            long,
            value_name = "DEPTHS",
            value_delimiter = ',',
            default_value = "1,8"
        )]
        queue_depth: Vec<String>,

        /// Bytes per run
        #[arg(long, value_name = "SIZE", default_value = "256M")]
        total: String,

        /// Longest time per run
        #[arg(long, value_name = "SECONDS", default_value = "10")]
        duration: String,

        /// Seed of the random offsets
        #[arg(long, value_name = "N", default_value = "1")]
        seed: String,

        /// How requests are made: driver (DiskDriver completions) or async
        /// (AsyncDisk futures, one tokio task per request in flight)
        #[arg(long, value_name = "API", default_value = "driver")]
        api: String,

        /// Needed for write modes: they overwrite the disk's data
        #[arg(long)]
        allow_writes: bool,

        /// Print a JSON array of results instead of a table
        #[arg(long)]
        json: bool,
    }
}

const EXAMPLES: &str =
    "  vddk-bench libdir=/opt/vddk /vms/web.vmdk -m read,randread -b 4K,64K,1M -q 1,16
  vddk-bench libdir=/opt/vddk /vms/scratch.vmdk -m write --allow-writes --total 1G
  vddk-bench libdir=/opt/vddk /vms/web.vmdk --api async -q 16
";

fn main() {
    vddk_examples::run_program(bench_main)
}

/// A comma list's items, without empty ones; `default`'s when none is left.
fn list_or<T>(
    items: &[String],
    default: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Vec<T>, String> {
    let mut items: Vec<&str> = items
        .iter()
        .map(String::as_str)
        .filter(|s| !s.is_empty())
        .collect();
    if items.is_empty() {
        items = default.split(',').collect();
    }
    items.into_iter().map(parse).collect()
}

fn bench_main(args: &Args) -> Result<(), String> {
    let modes = list_or(&args.mode, "read", Mode::parse)?;
    let sizes = list_or(&args.request_size, "64K", |s| {
        let n = units::parse_size("--request-size", s)?;
        if n == 0 || n % 512 != 0 || n > 64 << 20 {
            return Err(format!(
                "--request-size {s}: use a multiple of 512 bytes between 512 and 64M"
            ));
        }
        Ok(n)
    })?;
    let depths = list_or(&args.queue_depth, "1,8", |s| {
        s.parse::<usize>()
            .ok()
            .filter(|n| (1..=1024).contains(n))
            .ok_or_else(|| format!("--queue-depth {s}: use numbers from 1 to 1024"))
    })?;
    let total = units::parse_size("--total", &args.total)?;
    let v = &args.duration;
    let duration = v
        .parse::<f64>()
        .ok()
        .filter(|s| *s > 0.0 && s.is_finite())
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("--duration {v}: give a positive number of seconds"))?;
    let v = &args.seed;
    let seed = v
        .parse::<u64>()
        .map_err(|_| format!("--seed {v}: give a whole number"))?;
    let use_async = match args.api.as_str() {
        "driver" => false,
        "async" => true,
        other => return Err(format!("--api {other}: use driver or async")),
    };
    let writes = modes.iter().any(|m| m.writes());
    if writes && !args.allow_writes {
        return Err(
            "write modes overwrite the disk's data: add --allow-writes if that is intended".into(),
        );
    }
    let params = args.common.params()?;
    let sess = session::open(&params, !writes)?;
    let transport = sess.disk.transport_mode();
    let max_depth = depths.iter().copied().max().unwrap_or(1);
    let driver: DiskDriver =
        DiskDriver::new(sess.disk, session::driver_options(&params, max_depth))
            .map_err(|e| format!("cannot start the disk driver: {e}"))?;
    let async_disk = vddk::AsyncDisk::new(driver.clone(), max_depth);
    let json_out = args.json;
    if !json_out {
        println!(
            "disk: {} ({} bytes, transport {transport})",
            sess.path,
            driver.capacity(),
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
                let out = if use_async {
                    bench::run_async(&async_disk, &r)
                } else {
                    bench::run(&driver, &r)
                };
                let out = out.map_err(|e| {
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
        let json = serde_json::to_string(&results).expect("the results serialise");
        println!("{json}");
    }
    driver
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

/// One run in `--json`'s array.
#[derive(Serialize)]
struct JsonResult {
    mode: &'static str,
    request_bytes: u64,
    queue_depth: usize,
    ops: u64,
    bytes: u64,
    /// Rounded to microseconds.
    seconds: f64,
    /// Rounded to three decimals.
    mb_per_sec: f64,
    p50_us: u128,
    p90_us: u128,
    p99_us: u128,
}

fn result_json(r: &Run, o: &Outcome) -> JsonResult {
    let round = |v: f64, places: i32| {
        let scale = 10f64.powi(places);
        (v * scale).round() / scale
    };
    JsonResult {
        mode: r.mode.name(),
        request_bytes: r.request,
        queue_depth: r.depth,
        ops: o.ops,
        bytes: o.bytes,
        seconds: round(o.elapsed.as_secs_f64(), 6),
        mb_per_sec: round(o.mb_per_sec(), 3),
        p50_us: micros(o.percentile(50.0)),
        p90_us: micros(o.percentile(90.0)),
        p99_us: micros(o.percentile(99.0)),
    }
}
