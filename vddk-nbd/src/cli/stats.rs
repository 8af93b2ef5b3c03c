//! `-D vddk.stats=1`: at exit, per VDDK function the total time, the
//! number of calls and the bytes moved, the most time first, in the layout
//! nbdkit's vddk plugin prints, so scripts reading one read the other.

use std::fmt::Write;

use super::args::DebugFlag;

/// Whether the flags ask for statistics (`-D vddk.stats=N`, N not 0; the
/// last one wins, as nbdkit's do).
pub fn requested(flags: &[DebugFlag]) -> bool {
    flags
        .iter()
        .rev()
        .find(|f| f.scope == "vddk" && f.name == "stats")
        .is_some_and(|f| f.value.trim().parse::<i64>() != Ok(0))
}

/// The table, one line per function that took any time; each line is
/// prefixed `vddk-nbd: debug: ` like the rest of the debug output.
pub fn table(stats: &[vddk::CallStats]) -> String {
    let mut out = String::new();
    let mut line = |s: String| {
        let _ = writeln!(out, "{}: debug: {s}", super::program());
    };
    line("VDDK function stats (-D vddk.stats=1):".into());
    line(format!(
        "{:<24}  {:>15} {:>5} {:>15}",
        "VixDiskLib_...", "µs", "calls", "bytes"
    ));
    for c in stats {
        let us = c.time.as_micros();
        if us == 0 {
            continue;
        }
        let name = c.function.strip_prefix("VixDiskLib_").unwrap_or(c.function);
        if c.bytes > 0 {
            line(format!(
                "  {name:<22} {us:>15} {:>5} {:>15}",
                c.calls, c.bytes
            ));
        } else {
            line(format!("  {name:<22} {us:>15} {:>5}", c.calls));
        }
    }
    out
}

/// Prints the table on stderr (whatever `-v` says: the user asked for it).
pub fn print(stats: &[vddk::CallStats]) {
    eprint!("{}", table(stats));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn flag(v: &str) -> DebugFlag {
        super::super::args::parse_debug_flag(&format!("vddk.stats={v}")).unwrap()
    }

    #[test]
    fn requested_only_by_a_nonzero_vddk_stats() {
        assert!(requested(&[flag("1")]));
        assert!(!requested(&[flag("0")]));
        assert!(!requested(&[flag("1"), flag("0")]));
        assert!(!requested(&[]));
        let other = super::super::args::parse_debug_flag("vddk.datapath=1").unwrap();
        assert!(!requested(&[other]));
    }

    #[test]
    fn table_matches_nbdkit_layout() {
        let stats = [
            vddk::CallStats {
                function: "VixDiskLib_Read",
                calls: 3,
                bytes: 1536,
                time: Duration::from_micros(120),
            },
            vddk::CallStats {
                function: "VixDiskLib_Open",
                calls: 1,
                bytes: 0,
                time: Duration::from_micros(45),
            },
            vddk::CallStats {
                function: "VixDiskLib_GetTransportMode",
                calls: 1,
                bytes: 0,
                time: Duration::ZERO,
            },
        ];
        let t = table(&stats);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        assert_eq!(
            lines[2],
            "vddk-nbd: debug:   Read                               120     3            1536"
        );
        assert_eq!(
            lines[3],
            "vddk-nbd: debug:   Open                                45     1"
        );
    }
}
