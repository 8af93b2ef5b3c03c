//! The link settings of a server: their inventory keys and environment
//! overrides, parsed and described for log lines.

use std::time::Duration;

use super::units::{parse_rate, parse_seconds, parse_size, rate_text};

/// One link setting: its inventory key and its environment override.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Bandwidth,
    HostBandwidth,
    ConnectCost,
    OpenCost,
    DropAfterBytes,
    DropEveryBytes,
    DropAfterMs,
    SessionTtl,
    MaxNfc,
}

impl Key {
    pub const ALL: [Key; 9] = [
        Key::Bandwidth,
        Key::HostBandwidth,
        Key::ConnectCost,
        Key::OpenCost,
        Key::DropAfterBytes,
        Key::DropEveryBytes,
        Key::DropAfterMs,
        Key::SessionTtl,
        Key::MaxNfc,
    ];

    /// The `[server]` key in the inventory.
    pub fn inventory_name(self) -> &'static str {
        match self {
            Key::Bandwidth => "bandwidth",
            Key::HostBandwidth => "host_bandwidth",
            Key::ConnectCost => "connect_cost_ms",
            Key::OpenCost => "open_cost_ms",
            Key::DropAfterBytes => "drop_after_bytes",
            Key::DropEveryBytes => "drop_every_bytes",
            Key::DropAfterMs => "drop_after_ms",
            Key::SessionTtl => "session_ttl_s",
            Key::MaxNfc => "max_nfc_connections",
        }
    }

    /// The environment variable that overrides it for every server.
    pub fn env_name(self) -> &'static str {
        match self {
            Key::Bandwidth => "FAKE_VDDK_BANDWIDTH",
            Key::HostBandwidth => "FAKE_VDDK_HOST_BANDWIDTH",
            Key::ConnectCost => "FAKE_VDDK_CONNECT_COST_MS",
            Key::OpenCost => "FAKE_VDDK_OPEN_COST_MS",
            Key::DropAfterBytes => "FAKE_VDDK_DROP_AFTER_BYTES",
            Key::DropEveryBytes => "FAKE_VDDK_DROP_EVERY_BYTES",
            Key::DropAfterMs => "FAKE_VDDK_DROP_AFTER_MS",
            Key::SessionTtl => "FAKE_VDDK_SESSION_TTL_S",
            Key::MaxNfc => "FAKE_VDDK_MAX_NFC_CONNECTIONS",
        }
    }

    /// The key with this inventory name.
    pub fn from_inventory(name: &str) -> Option<Key> {
        Key::ALL.into_iter().find(|k| k.inventory_name() == name)
    }

    fn what(self) -> &'static str {
        match self {
            Key::Bandwidth | Key::HostBandwidth => {
                "a rate such as 1Gbit, 100Mbit, 100M (bytes per second) or 0 for unlimited"
            }
            Key::ConnectCost | Key::OpenCost | Key::DropAfterMs => {
                "a whole number of milliseconds, 0 for none"
            }
            Key::DropAfterBytes | Key::DropEveryBytes => {
                "a size such as 4096, 64K, 1M or 2G (bytes), 0 for never"
            }
            Key::SessionTtl => "a number of seconds such as 1800 or 0.5, 0 for never",
            Key::MaxNfc => "a whole number of connections, 0 for unlimited",
        }
    }
}

/// The link settings of one server (all off by default).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LinkConfig {
    /// Bytes per second of one NFC connection (one open disk handle).
    pub bandwidth: Option<f64>,
    /// Bytes per second of the ESXi host, shared by all its connections.
    pub host_bandwidth: Option<f64>,
    /// Time ConnectEx (and PrepareForAccess/EndAccess) spend logging in.
    pub connect_cost: Duration,
    /// Time a remote Open spends setting up its NFC connection.
    pub open_cost: Duration,
    /// A connection is lost once this many bytes have crossed it.
    pub drop_after_bytes: Option<u64>,
    /// The host loses the connection carrying every N-th byte it serves.
    pub drop_every_bytes: Option<u64>,
    /// A connection is lost this long after its ConnectEx.
    pub drop_after: Option<Duration>,
    /// Session cookies stop working this long after InitEx.
    pub session_ttl: Option<Duration>,
    /// Open remote disks the host allows at once.
    pub max_nfc_connections: Option<u32>,
}

impl LinkConfig {
    /// Sets `key` from its text form; zero turns the setting off.
    ///
    /// # Errors
    /// What a valid value looks like.
    pub fn set(&mut self, key: Key, value: &str) -> Result<(), String> {
        let bad = || format!("{value:?} is not {}", key.what());
        let ms = |v: &str| -> Result<u64, String> { v.trim().parse::<u64>().map_err(|_| bad()) };
        match key {
            Key::Bandwidth => self.bandwidth = parse_rate(value).ok_or_else(bad)?,
            Key::HostBandwidth => self.host_bandwidth = parse_rate(value).ok_or_else(bad)?,
            Key::ConnectCost => self.connect_cost = Duration::from_millis(ms(value)?),
            Key::OpenCost => self.open_cost = Duration::from_millis(ms(value)?),
            Key::DropAfterBytes => self.drop_after_bytes = parse_size(value).ok_or_else(bad)?,
            Key::DropEveryBytes => self.drop_every_bytes = parse_size(value).ok_or_else(bad)?,
            Key::DropAfterMs => {
                self.drop_after = Some(ms(value)?)
                    .filter(|n| *n > 0)
                    .map(Duration::from_millis)
            }
            Key::SessionTtl => self.session_ttl = parse_seconds(value).ok_or_else(bad)?,
            Key::MaxNfc => {
                self.max_nfc_connections = value
                    .trim()
                    .parse::<u32>()
                    .map_err(|_| bad())
                    .map(|n| Some(n).filter(|n| *n > 0))?
            }
        }
        Ok(())
    }

    fn copy_from(&mut self, other: &LinkConfig, key: Key) {
        match key {
            Key::Bandwidth => self.bandwidth = other.bandwidth,
            Key::HostBandwidth => self.host_bandwidth = other.host_bandwidth,
            Key::ConnectCost => self.connect_cost = other.connect_cost,
            Key::OpenCost => self.open_cost = other.open_cost,
            Key::DropAfterBytes => self.drop_after_bytes = other.drop_after_bytes,
            Key::DropEveryBytes => self.drop_every_bytes = other.drop_every_bytes,
            Key::DropAfterMs => self.drop_after = other.drop_after,
            Key::SessionTtl => self.session_ttl = other.session_ttl,
            Key::MaxNfc => self.max_nfc_connections = other.max_nfc_connections,
        }
    }

    /// Whether connections need the per-request model (rates, losses, the
    /// connection limit); costs and session expiry do not.
    pub fn per_io(&self) -> bool {
        self.bandwidth.is_some()
            || self.host_bandwidth.is_some()
            || self.drop_after_bytes.is_some()
            || self.drop_every_bytes.is_some()
            || self.drop_after.is_some()
            || self.max_nfc_connections.is_some()
    }

    /// `key=value` for each setting that is on, for the InitEx log line.
    fn describe(&self, key: Key) -> Option<String> {
        let name = key.inventory_name();
        let rate = |r: Option<f64>| r.map(|r| format!("{name}={}", rate_text(r)));
        match key {
            Key::Bandwidth => rate(self.bandwidth),
            Key::HostBandwidth => rate(self.host_bandwidth),
            Key::ConnectCost => Some(self.connect_cost)
                .filter(|d| !d.is_zero())
                .map(|d| format!("{name}={}", d.as_millis())),
            Key::OpenCost => Some(self.open_cost)
                .filter(|d| !d.is_zero())
                .map(|d| format!("{name}={}", d.as_millis())),
            Key::DropAfterBytes => self.drop_after_bytes.map(|n| format!("{name}={n}")),
            Key::DropEveryBytes => self.drop_every_bytes.map(|n| format!("{name}={n}")),
            Key::DropAfterMs => self.drop_after.map(|d| format!("{name}={}", d.as_millis())),
            Key::SessionTtl => self
                .session_ttl
                .map(|d| format!("{name}={}", d.as_secs_f64())),
            Key::MaxNfc => self.max_nfc_connections.map(|n| format!("{name}={n}")),
        }
    }
}

/// Link settings given in the environment, which replace the inventory's
/// for every server.
#[derive(Debug, Default)]
pub struct Overrides {
    values: LinkConfig,
    given: Vec<Key>,
}

impl Overrides {
    /// Reads every `FAKE_VDDK_*` link variable through `get`.
    ///
    /// # Errors
    /// A message naming the variable and what a valid value looks like.
    pub fn parse(get: &impl Fn(&str) -> Option<String>) -> Result<Overrides, String> {
        let mut out = Overrides::default();
        for key in Key::ALL {
            let Some(value) = get(key.env_name()).filter(|v| !v.trim().is_empty()) else {
                continue;
            };
            out.values
                .set(key, &value)
                .map_err(|e| format!("{}={e}; or unset it", key.env_name()))?;
            out.given.push(key);
        }
        Ok(out)
    }

    /// `base` with the overridden settings replaced.
    pub fn apply(&self, base: &LinkConfig) -> LinkConfig {
        let mut out = base.clone();
        for key in &self.given {
            out.copy_from(&self.values, *key);
        }
        out
    }

    /// The overrides in force, for the InitEx log line.
    pub fn summary(&self) -> Vec<String> {
        self.given
            .iter()
            .map(|k| {
                self.values
                    .describe(*k)
                    .unwrap_or_else(|| format!("{}=off", k.inventory_name()))
            })
            .map(|s| format!("link {s}"))
            .collect()
    }
}

/// Every setting that is on, `key=value`, for log lines.
pub fn describe(cfg: &LinkConfig) -> String {
    let parts: Vec<String> = Key::ALL.iter().filter_map(|k| cfg.describe(*k)).collect();
    if parts.is_empty() {
        "no link settings".into()
    } else {
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_replace_inventory_settings_and_name_the_variable() {
        let get = |k: &str| match k {
            "FAKE_VDDK_BANDWIDTH" => Some("8Mbit".to_string()),
            "FAKE_VDDK_MAX_NFC_CONNECTIONS" => Some("0".to_string()),
            _ => None,
        };
        let o = Overrides::parse(&get).unwrap();
        let mut inv = LinkConfig::default();
        inv.set(Key::MaxNfc, "3").unwrap();
        inv.set(Key::OpenCost, "20").unwrap();
        let cfg = o.apply(&inv);
        assert_eq!(cfg.bandwidth, Some(1_000_000.0));
        assert_eq!(cfg.max_nfc_connections, None, "0 turns the limit off");
        assert_eq!(cfg.open_cost, Duration::from_millis(20));
        let bad = |k: &'static str, v: &'static str| {
            Overrides::parse(&move |q: &str| (q == k).then(|| v.to_string())).unwrap_err()
        };
        assert!(bad("FAKE_VDDK_HOST_BANDWIDTH", "lots").contains("FAKE_VDDK_HOST_BANDWIDTH"));
        assert!(bad("FAKE_VDDK_SESSION_TTL_S", "-3").contains("seconds"));
        assert!(bad("FAKE_VDDK_DROP_AFTER_BYTES", "x").contains("size"));
    }
}
