//! nbdkit's size syntax: a number of bytes with an optional binary
//! suffix (`512`, `64K`, `1M`, `10G`, `2T`; `s` counts 512-byte sectors).

/// A size that cannot be read, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadSize(String);

/// Parses a size.
///
/// # Errors
/// [`BadSize`], saying what was wrong: no number, one too large, or an
/// unknown suffix.
pub fn parse_size(s: &str) -> Result<u64, BadSize> {
    let s = s.trim();
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, suffix) = s.split_at(digits_end);
    if num.is_empty() {
        return Err(BadSize(
            "expected a number of bytes, optionally with a suffix such as K, M, G or T".into(),
        ));
    }
    let n: u64 = num
        .parse()
        .map_err(|_| BadSize(format!("'{num}' is too large")))?;
    let shift = match suffix {
        "" | "b" | "B" => 0,
        "s" | "S" => 9,
        "k" | "K" | "KiB" => 10,
        "m" | "M" | "MiB" => 20,
        "g" | "G" | "GiB" => 30,
        "t" | "T" | "TiB" => 40,
        "p" | "P" | "PiB" => 50,
        "e" | "E" | "EiB" => 60,
        other => {
            return Err(BadSize(format!(
                "unknown size suffix '{other}'; use b, s (512-byte sectors), K, M, G, T, P or E"
            )))
        }
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| BadSize(format!("'{s}' does not fit in 64 bits")))
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn suffixes() {
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("1b"), Ok(1));
        assert_eq!(parse_size("2s"), Ok(1024));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("3T"), Ok(3 << 40));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
    }

    #[test]
    fn errors() {
        assert!(parse_size("").is_err());
        assert!(parse_size("G").is_err());
        assert!(parse_size("1X")
            .unwrap_err()
            .to_string()
            .contains("unknown size suffix"));
        assert!(parse_size("-1").is_err());
        assert!(parse_size("16E")
            .unwrap_err()
            .to_string()
            .contains("64 bits"));
        assert!(parse_size("99999999999999999999999").is_err());
    }
}
