//! The fake's own call counts: the file `FAKE_VDDK_STATS` names, written at
//! Exit (`# fake-vddk stats v1: function calls errors bytes time_us`, then
//! one line per function called).

use std::collections::BTreeMap;
use std::path::Path;

/// One function's line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Row {
    pub calls: u64,
    pub errors: u64,
    pub bytes: u64,
    pub time_us: u64,
}

/// A stats file, read.
#[derive(Debug, Clone)]
pub struct FakeStats {
    /// The file as written, for failure messages.
    pub text: String,
    /// Function name without `VixDiskLib_` -> its line.
    pub rows: BTreeMap<String, Row>,
}

/// The header line the fake writes first.
pub const HEADER: &str = "# fake-vddk stats v1: function calls errors bytes time_us";

impl FakeStats {
    /// Reads the stats file at `path`; panics if there is none.
    pub fn read(path: &Path) -> FakeStats {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("the fake's stats file {}: {e}", path.display()));
        FakeStats::parse(text)
    }

    /// Parses the text of a stats file.
    pub fn parse(text: String) -> FakeStats {
        let rows = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let n = |i: usize| -> u64 {
                    f.get(i)
                        .and_then(|v| v.parse().ok())
                        .unwrap_or_else(|| panic!("bad stats line {l:?}"))
                };
                let name = f[0].strip_prefix("VixDiskLib_").unwrap_or(f[0]);
                let row = Row {
                    calls: n(1),
                    errors: n(2),
                    bytes: n(3),
                    time_us: n(4),
                };
                (name.to_owned(), row)
            })
            .collect();
        FakeStats { text, rows }
    }

    /// The line of `function` (without `VixDiskLib_`); zeroes when it
    /// was never called.
    pub fn get(&self, function: &str) -> Row {
        self.rows.get(function).copied().unwrap_or_default()
    }

    /// The line of `function`, which must have been called.
    pub fn row(&self, function: &str) -> Row {
        *self
            .rows
            .get(function)
            .unwrap_or_else(|| panic!("no {function} in\n{}", self.text))
    }
}
