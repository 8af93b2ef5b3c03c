//! Rates, sizes and durations as the settings write them.

use std::time::Duration;

/// A number and the unit text that follows it.
fn number_and_unit(s: &str) -> Option<(f64, String)> {
    let s = s.trim();
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let n = s[..end]
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite() && *n >= 0.0)?;
    Some((n, s[end..].trim().to_ascii_lowercase()))
}

fn prefix(p: &str, base: f64) -> Option<f64> {
    Some(match p {
        "" => 1.0,
        "k" => base,
        "m" => base * base,
        "g" => base * base * base,
        "t" => base * base * base * base,
        _ => return None,
    })
}

/// Bytes per second from `1Gbit`, `100Mbit/s` (bits, powers of 1000),
/// `100M`, `100MB`, `100MiB/s`, `4096` (bytes, powers of 1024); zero is
/// `Some(None)` (unlimited), nonsense is `None`.
pub fn parse_rate(s: &str) -> Option<Option<f64>> {
    let (n, unit) = number_and_unit(s)?;
    let unit = unit.strip_suffix("/s").unwrap_or(&unit).trim_end();
    let bytes = match unit.strip_suffix("bit") {
        Some(p) => n * prefix(p, 1000.0)? / 8.0,
        None => {
            let p = unit
                .strip_suffix("ib")
                .or_else(|| unit.strip_suffix('b'))
                .unwrap_or(unit);
            n * prefix(p, 1024.0)?
        }
    };
    Some(Some(bytes).filter(|b| *b > 0.0))
}

/// Bytes from `4096`, `64K`, `1M`, `2GiB` (powers of 1024); zero is
/// `Some(None)`.
pub fn parse_size(s: &str) -> Option<Option<u64>> {
    let (n, unit) = number_and_unit(s)?;
    let p = unit
        .strip_suffix("ib")
        .or_else(|| unit.strip_suffix('b'))
        .unwrap_or(&unit);
    let bytes = (n * prefix(p, 1024.0)?).round();
    if bytes >= u64::MAX as f64 {
        return None;
    }
    Some(Some(bytes as u64).filter(|b| *b > 0))
}

/// A duration from a decimal number of seconds; zero is `Some(None)`.
pub fn parse_seconds(s: &str) -> Option<Option<Duration>> {
    let n = s
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite() && *n >= 0.0 && *n < 1e12)?;
    Some(Some(Duration::from_secs_f64(n)).filter(|d| !d.is_zero()))
}

/// A rate as people write it: `125000000 B/s (1 Gbit/s)`.
pub fn rate_text(bytes_per_s: f64) -> String {
    format!("{bytes_per_s:.0} B/s ({} Mbit/s)", bytes_per_s * 8.0 / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_sizes_and_seconds_parse() {
        assert_eq!(parse_rate("1Gbit"), Some(Some(125_000_000.0)));
        assert_eq!(parse_rate("100 Mbit/s"), Some(Some(12_500_000.0)));
        assert_eq!(parse_rate("100M"), Some(Some(100.0 * 1048576.0)));
        assert_eq!(parse_rate("2MiB/s"), Some(Some(2.0 * 1048576.0)));
        assert_eq!(parse_rate("4096"), Some(Some(4096.0)));
        assert_eq!(parse_rate("0"), Some(None));
        assert_eq!(parse_rate("fast"), None);
        assert_eq!(parse_rate("1Xbit"), None);
        assert_eq!(parse_size("64K"), Some(Some(65536)));
        assert_eq!(parse_size("1.5M"), Some(Some(1572864)));
        assert_eq!(parse_size("2GiB"), Some(Some(2 << 30)));
        assert_eq!(parse_size("0"), Some(None));
        assert_eq!(parse_size("-1"), None);
        assert_eq!(parse_size("1Gbit"), None);
        assert_eq!(parse_seconds("0.5"), Some(Some(Duration::from_millis(500))));
        assert_eq!(parse_seconds("0"), Some(None));
        assert_eq!(parse_seconds("soon"), None);
    }
}
