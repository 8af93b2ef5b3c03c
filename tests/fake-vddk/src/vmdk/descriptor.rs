//! The text descriptor: header keys, extent lines and the disk database.
//!
//! Parsing keeps the order of header keys and DDB entries so that writing a
//! descriptor back changes only what was set.

use super::VmdkError;

/// Access mode of an extent line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `RW`
    Rw,
    /// `RDONLY`
    RdOnly,
    /// `NOACCESS`
    NoAccess,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Rw => "RW",
            Mode::RdOnly => "RDONLY",
            Mode::NoAccess => "NOACCESS",
        }
    }
}

/// Type of an extent line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtentKind {
    /// `FLAT`: raw sectors in a file, from `offset`.
    Flat,
    /// `VMFS`: like FLAT (the ESX name for it).
    Vmfs,
    /// `SPARSE`: a hosted sparse extent (KDMV header).
    Sparse,
    /// `ZERO`: reads as zeroes, no file.
    Zero,
    /// `VMFSSPARSE`: ESX redo log (COWD); parsed but not served.
    VmfsSparse,
}

impl ExtentKind {
    fn parse(s: &str) -> Option<ExtentKind> {
        Some(match s {
            "FLAT" => ExtentKind::Flat,
            "VMFS" => ExtentKind::Vmfs,
            "SPARSE" => ExtentKind::Sparse,
            "ZERO" => ExtentKind::Zero,
            "VMFSSPARSE" => ExtentKind::VmfsSparse,
            _ => return None,
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            ExtentKind::Flat => "FLAT",
            ExtentKind::Vmfs => "VMFS",
            ExtentKind::Sparse => "SPARSE",
            ExtentKind::Zero => "ZERO",
            ExtentKind::VmfsSparse => "VMFSSPARSE",
        }
    }
}

/// One extent line: `RW 2048 FLAT "disk-flat.vmdk" 0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtentLine {
    /// Mode mode.
    pub access: Mode,
    /// Size in sectors.
    pub sectors: u64,
    /// Extent type.
    pub kind: ExtentKind,
    /// File name, relative to the descriptor's directory (None for ZERO).
    pub file: Option<String>,
    /// Start offset in sectors inside the file (FLAT/VMFS only).
    pub offset: u64,
}

/// A parsed descriptor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Descriptor {
    /// Header `key=value` pairs in file order, values without quotes.
    pub header: Vec<(String, String)>,
    /// Extent lines in order; their sizes add up to the capacity.
    pub extents: Vec<ExtentLine>,
    /// DDB entries in file order, keys without the `ddb.` prefix.
    pub ddb: Vec<(String, String)>,
}

fn unquote(s: &str) -> &str {
    let s = s.trim();
    s.strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .unwrap_or(s)
}

fn parse_extent(line: &str) -> Result<ExtentLine, VmdkError> {
    let bad = || VmdkError::Invalid(format!("malformed extent line `{line}` in the descriptor"));
    let (access, rest) = line.split_once(char::is_whitespace).ok_or_else(bad)?;
    let access = match access {
        "RW" => Mode::Rw,
        "RDONLY" => Mode::RdOnly,
        "NOACCESS" => Mode::NoAccess,
        _ => return Err(bad()),
    };
    let rest = rest.trim_start();
    let (sectors, rest) = rest.split_once(char::is_whitespace).ok_or_else(bad)?;
    let sectors: u64 = sectors.parse().map_err(|_| bad())?;
    let rest = rest.trim_start();
    let (kind, rest) = match rest.split_once(char::is_whitespace) {
        Some((k, r)) => (k, r.trim()),
        None => (rest, ""),
    };
    let kind = ExtentKind::parse(kind).ok_or_else(bad)?;
    if kind == ExtentKind::Zero {
        return Ok(ExtentLine {
            access,
            sectors,
            kind,
            file: None,
            offset: 0,
        });
    }
    // The file name is quoted and may contain spaces; an offset may follow.
    let rest = rest.strip_prefix('"').ok_or_else(bad)?;
    let (file, tail) = rest.split_once('"').ok_or_else(bad)?;
    let tail = tail.trim();
    let offset = if tail.is_empty() {
        0
    } else {
        tail.parse().map_err(|_| bad())?
    };
    Ok(ExtentLine {
        access,
        sectors,
        kind,
        file: Some(file.to_string()),
        offset,
    })
}

impl Descriptor {
    /// Parses descriptor text. Blank lines and `#` comments are skipped;
    /// unknown header keys are kept.
    pub fn parse(text: &str) -> Result<Descriptor, VmdkError> {
        let mut d = Descriptor::default();
        for raw in text.lines() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if line.starts_with("RW ")
                || line.starts_with("RDONLY ")
                || line.starts_with("NOACCESS ")
            {
                d.extents.push(parse_extent(line)?);
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(VmdkError::Invalid(format!(
                    "unexpected line `{line}` in the descriptor: expected key=value or an extent line"
                )));
            };
            let key = key.trim();
            let value = unquote(value).to_string();
            match key.strip_prefix("ddb.") {
                Some(k) => d.ddb.push((k.to_string(), value)),
                None => d.header.push((key.to_string(), value)),
            }
        }
        if d.extents.is_empty() {
            return Err(VmdkError::Invalid(
                "the descriptor has no extent lines; it is not a disk descriptor".into(),
            ));
        }
        Ok(d)
    }

    /// Writes the descriptor in the layout VMware tools write.
    pub fn to_text(&self) -> String {
        let mut s = String::from("# Disk DescriptorFile\n");
        for (k, v) in &self.header {
            // Numbers (version, CID) are bare; names are quoted.
            if matches!(k.as_str(), "version" | "CID" | "parentCID") {
                s.push_str(&format!("{k}={v}\n"));
            } else {
                s.push_str(&format!("{k}=\"{v}\"\n"));
            }
        }
        s.push_str("\n# Extent description\n");
        for e in &self.extents {
            s.push_str(&format!(
                "{} {} {}",
                e.access.as_str(),
                e.sectors,
                e.kind.as_str()
            ));
            if let Some(f) = &e.file {
                s.push_str(&format!(" \"{f}\""));
                // FLAT lines always carry the offset (qemu requires it);
                // VMFS lines carry it only when not zero, as ESX writes them.
                if e.kind == ExtentKind::Flat || (e.kind == ExtentKind::Vmfs && e.offset != 0) {
                    s.push_str(&format!(" {}", e.offset));
                }
            }
            s.push('\n');
        }
        s.push_str("\n# The Disk Data Base\n#DDB\n\n");
        for (k, v) in &self.ddb {
            s.push_str(&format!("ddb.{k} = \"{v}\"\n"));
        }
        s
    }

    /// A header value (`createType`, `CID`, `parentFileNameHint`, ...).
    pub fn header_get(&self, key: &str) -> Option<&str> {
        self.header
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Sets a header value, appending the key if absent.
    pub fn header_set(&mut self, key: &str, value: &str) {
        match self.header.iter_mut().find(|(k, _)| k == key) {
            Some(e) => e.1 = value.to_string(),
            None => self.header.push((key.to_string(), value.to_string())),
        }
    }

    /// A DDB value, key without `ddb.`.
    pub fn ddb_get(&self, key: &str) -> Option<&str> {
        self.ddb
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Sets a DDB value (key without `ddb.`), appending it if absent.
    pub fn ddb_set(&mut self, key: &str, value: &str) {
        match self.ddb.iter_mut().find(|(k, _)| k == key) {
            Some(e) => e.1 = value.to_string(),
            None => self.ddb.push((key.to_string(), value.to_string())),
        }
    }

    /// Capacity in sectors: the sum of the extent sizes.
    pub fn capacity(&self) -> u64 {
        // Saturating: opening refuses extents that overflow, but a
        // descriptor is also read (grow) before that check.
        self.extents
            .iter()
            .fold(0u64, |a, e| a.saturating_add(e.sectors))
    }

    /// `createType`, or "" when missing.
    pub fn create_type(&self) -> &str {
        self.header_get("createType").unwrap_or("")
    }

    /// `parentFileNameHint` when the disk has a parent.
    pub fn parent_hint(&self) -> Option<&str> {
        self.header_get("parentFileNameHint")
            .filter(|s| !s.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# Disk DescriptorFile\nversion=1\nCID=cfa2d0e2\nparentCID=ffffffff\n\
createType=\"twoGbMaxExtentFlat\"\n\n# Extent description\nRW 4192256 FLAT \"a b-f001.vmdk\" 0\n\
RDONLY 100 FLAT \"a b-f002.vmdk\" 7\nNOACCESS 8 ZERO\n\n#DDB\nddb.adapterType = \"lsilogic\"\n\
ddb.geometry.heads=\"255\"\n";

    #[test]
    fn parses_extents_header_and_ddb() {
        let d = Descriptor::parse(TEXT).unwrap();
        assert_eq!(d.create_type(), "twoGbMaxExtentFlat");
        assert_eq!(d.header_get("CID"), Some("cfa2d0e2"));
        assert_eq!(d.extents.len(), 3);
        assert_eq!(d.extents[0].file.as_deref(), Some("a b-f001.vmdk"));
        assert_eq!(d.extents[1].access, Mode::RdOnly);
        assert_eq!(d.extents[1].offset, 7);
        assert_eq!(d.extents[2].kind, ExtentKind::Zero);
        assert_eq!(d.capacity(), 4192256 + 100 + 8);
        assert_eq!(d.ddb_get("adapterType"), Some("lsilogic"));
        assert_eq!(d.ddb_get("geometry.heads"), Some("255"));
    }

    #[test]
    fn round_trips_through_text() {
        let d = Descriptor::parse(TEXT).unwrap();
        let again = Descriptor::parse(&d.to_text()).unwrap();
        assert_eq!(d, again);
    }

    #[test]
    fn rejects_text_without_extents() {
        assert!(matches!(
            Descriptor::parse("version=1\n"),
            Err(VmdkError::Invalid(_))
        ));
        assert!(matches!(
            Descriptor::parse("RW x FLAT \"f\"\n"),
            Err(VmdkError::Invalid(_))
        ));
    }
}
