//! `[datastore] path` disk names: parsed, checked and written back in
//! the one form VDDK expects.
//!
//! Accepted as users find them: `[datastore1] web/web.vmdk` (what vSphere
//! shows), without the space after `]`, with surrounding blanks, and as
//! libvirt's `virsh dumpxml` prints a disk (`<source file='[datastore1]
//! web/web.vmdk'/>`, XML escapes included), so a line can be pasted as is.

use std::fmt;

/// Text that is not a datastore path, and how to write one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadDatastorePath(String);

/// A disk on a datastore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatastorePath {
    /// The datastore's name (spaces and any UTF-8 allowed, not `[` or `]`).
    pub datastore: String,
    /// The path inside the datastore, `/`-separated, without a leading `/`.
    pub path: String,
}

impl DatastorePath {
    /// Parses a datastore path in any of the accepted forms.
    pub fn parse(text: &str) -> Result<DatastorePath, BadDatastorePath> {
        let s = text.trim();
        let unescaped;
        let s = match source_attribute(s) {
            Some(v) => {
                unescaped = xml_unescape(v)?;
                unescaped.trim()
            }
            None => s,
        };
        let bad = |why: &str| {
            BadDatastorePath(format!(
                "{text:?} is not a datastore path ({why}): write it as [datastore] dir/disk.vmdk"
            ))
        };
        let rest = s.strip_prefix('[').ok_or_else(|| bad("no leading '['"))?;
        let (datastore, path) = rest.split_once(']').ok_or_else(|| bad("no closing ']'"))?;
        if datastore.trim().is_empty() {
            return Err(bad("the datastore name is empty"));
        }
        if datastore.contains('[') || datastore.chars().any(char::is_control) {
            return Err(bad("the datastore name holds '[' or control characters"));
        }
        let path = path.trim_start_matches(' ');
        if path.is_empty() {
            return Err(bad("no path after the datastore name"));
        }
        if path.starts_with('/') {
            return Err(bad("the path inside the datastore starts with '/'"));
        }
        if path.chars().any(char::is_control) {
            return Err(bad("the path holds control characters"));
        }
        if path
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(bad("the path has an empty, '.' or '..' component"));
        }
        Ok(DatastorePath {
            datastore: datastore.to_string(),
            path: path.to_string(),
        })
    }

    /// Whether `text` looks like a datastore path (or a libvirt `<source>`
    /// holding one) rather than a local file.
    pub fn looks_like(text: &str) -> bool {
        let s = text.trim_start();
        s.starts_with('[') || s.starts_with("<source")
    }
}

impl fmt::Display for DatastorePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.datastore, self.path)
    }
}

/// The value of `file=` in a `<source file='...'/>` element.
fn source_attribute(s: &str) -> Option<&str> {
    let rest = s.strip_prefix("<source")?;
    let at = rest.find("file=")?;
    let rest = &rest[at + 5..];
    let quote = rest.chars().next().filter(|q| *q == '\'' || *q == '"')?;
    let rest = &rest[1..];
    let end = rest.find(quote)?;
    Some(&rest[..end])
}

/// Decodes the escapes libvirt writes in attribute values.
fn xml_unescape(s: &str) -> Result<String, BadDatastorePath> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        let end = tail
            .find(';')
            .ok_or_else(|| BadDatastorePath(format!("unfinished XML escape in {s:?}")))?;
        let entity = &tail[1..end];
        let c = match entity {
            "amp" => '&',
            "apos" => '\'',
            "quot" => '"',
            "lt" => '<',
            "gt" => '>',
            e => {
                let code = e
                    .strip_prefix("#x")
                    .map(|h| u32::from_str_radix(h, 16))
                    .or_else(|| e.strip_prefix('#').map(str::parse::<u32>))
                    .and_then(Result::ok)
                    .and_then(char::from_u32);
                code.ok_or_else(|| BadDatastorePath(format!("unknown XML escape &{e}; in {s:?}")))?
            }
        };
        out.push(c);
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> String {
        DatastorePath::parse(s)
            .unwrap_or_else(|e| panic!("{s}: {e}"))
            .to_string()
    }

    #[test]
    fn accepted_forms() {
        assert_eq!(ok("[datastore1] web/web.vmdk"), "[datastore1] web/web.vmdk");
        assert_eq!(
            ok("  [datastore1]web/web.vmdk \n"),
            "[datastore1] web/web.vmdk"
        );
        assert_eq!(
            ok("[My Store (2)] My VM/My VM.vmdk"),
            "[My Store (2)] My VM/My VM.vmdk"
        );
        assert_eq!(
            ok("[données] vm-é/disque ü.vmdk"),
            "[données] vm-é/disque ü.vmdk"
        );
        let p = DatastorePath::parse("[ds 1] a b/c.vmdk").unwrap();
        assert_eq!(
            (p.datastore.as_str(), p.path.as_str()),
            ("ds 1", "a b/c.vmdk")
        );
    }

    #[test]
    fn libvirt_dumpxml_sources() {
        assert_eq!(
            ok("<source file='[datastore1] Tom &amp; Jerry/Tom &amp; Jerry.vmdk'/>"),
            "[datastore1] Tom & Jerry/Tom & Jerry.vmdk"
        );
        assert_eq!(
            ok(r#"      <source file="[ds] it&apos;s/x&#233;.vmdk"/>"#),
            "[ds] it's/xé.vmdk"
        );
        assert!(DatastorePath::parse("<source file='[ds] a/&bogus;.vmdk'/>").is_err());
        assert!(DatastorePath::looks_like("<source file='[ds] a/b.vmdk'/>"));
        assert!(DatastorePath::looks_like(" [ds] a"));
        assert!(!DatastorePath::looks_like("/srv/a.vmdk"));
    }

    #[test]
    fn refused_forms() {
        for bad in [
            "datastore1 web/web.vmdk",
            "[datastore1 web/web.vmdk",
            "[] web/web.vmdk",
            "[ds]",
            "[ds] ",
            "[ds] /abs/x.vmdk",
            "[ds] a/../b.vmdk",
            "[ds] a//b.vmdk",
            "[d[s] a.vmdk",
            "[ds] a\tb.vmdk",
        ] {
            let e = DatastorePath::parse(bad).unwrap_err().to_string();
            assert!(e.contains("[datastore] dir/disk.vmdk"), "{bad}: {e}");
        }
    }
}
