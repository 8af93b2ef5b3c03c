//! Human-readable sizes and rates.

use std::time::Duration;

/// `1536` -> `1.5 KiB`; exact bytes below 1 KiB.
pub fn bytes(n: u64) -> String {
    const UNITS: &[&str] = &["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    format!("{v:.1} {}", UNITS[i])
}

/// A size the way it is typed: `64K`, `1M`, `3G`, or plain bytes when
/// no binary suffix divides it exactly.
pub fn size_label(n: u64) -> String {
    for (shift, suffix) in [(40, "T"), (30, "G"), (20, "M"), (10, "K")] {
        if n != 0 && n % (1u64 << shift) == 0 {
            return format!("{}{suffix}", n >> shift);
        }
    }
    n.to_string()
}

/// A rate in bytes per second, as `12.3 MiB/s`.
pub fn rate(bytes_done: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        return "- B/s".into();
    }
    format!("{}/s", bytes((bytes_done as f64 / secs) as u64))
}

/// Parses a size with nbdkit's syntax (`512`, `64K`, `1M`, `2G`), naming
/// the flag in the error.
pub fn parse_size(flag: &str, v: &str) -> Result<u64, String> {
    vddk_nbd::params::parse_size(v).map_err(|e| format!("{flag} {v}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
        assert_eq!(rate(2 << 20, Duration::from_secs(2)), "1.0 MiB/s");
        assert_eq!(parse_size("--size", "1M"), Ok(1 << 20));
        assert_eq!(size_label(4096), "4K");
        assert_eq!(size_label(3 << 20), "3M");
        assert_eq!(size_label(1536), "1536");
        assert_eq!(size_label(0), "0");
        assert!(parse_size("--size", "1X")
            .unwrap_err()
            .starts_with("--size 1X:"));
    }
}
