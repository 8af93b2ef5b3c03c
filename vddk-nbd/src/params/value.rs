//! Values in the nbdkit parameter language: booleans, ports, names from a
//! table, values the `vddk` crate parses, and the one error type.

use std::fmt;

/// A parameter mistake, printed as one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamError(pub String);

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParamError {}

pub(crate) fn err(msg: impl Into<String>) -> ParamError {
    ParamError(msg.into())
}

/// nbdkit's boolean spellings.
pub fn parse_bool(key: &str, v: &str) -> Result<bool, ParamError> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "t" | "yes" | "y" | "on" => Ok(true),
        "0" | "false" | "f" | "no" | "n" | "off" | "" => Ok(false),
        _ => Err(err(format!(
            "{key}={v}: expected a boolean (true or false)"
        ))),
    }
}

pub(crate) fn parse_port(key: &str, v: &str) -> Result<u16, ParamError> {
    v.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
        err(format!(
            "cannot parse {key}: '{v}' is not a TCP port (1-65535)"
        ))
    })
}

pub(crate) fn lookup<T: Copy>(key: &str, v: &str, table: &[(&str, T)]) -> Result<T, ParamError> {
    table
        .iter()
        .find(|(n, _)| *n == v)
        .map(|(_, t)| *t)
        .ok_or_else(|| {
            let names: Vec<&str> = table.iter().map(|(n, _)| *n).collect();
            err(format!(
                "{key}={v}: unknown value; use one of: {}",
                names.join(", ")
            ))
        })
}

/// A value the `vddk` crate parses (nbdkit's names are among those it takes).
pub(crate) fn typed<T: std::str::FromStr<Err = vddk::Error>>(
    key: &str,
    v: &str,
) -> Result<T, ParamError> {
    v.parse::<T>().map_err(|e| {
        let why = match e {
            vddk::Error::InvalidArgument(m) => m,
            other => other.to_string(),
        };
        err(format!("{key}={v}: {why}"))
    })
}
