//! Path-aware wildcards for `export=`: `*` matches any run of characters
//! within one path component, `?` one character other than `/`, and `\`
//! makes the next character literal. Brackets are literal, so datastore
//! paths such as `[datastore1] web/*.vmdk` need no escaping.

use crate::datastore::DatastorePath;

/// A pattern that cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadPattern(String);

/// A disk path a client may not ask for, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadPath(String);

/// A compiled `export=` pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wildcard {
    text: String,
    tokens: Vec<Token>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Literal(char),
    One,
    Any,
}

impl Wildcard {
    /// Compiles `pattern`; fails on an empty one or a trailing `\`.
    pub fn new(pattern: &str) -> Result<Wildcard, BadPattern> {
        if pattern.is_empty() {
            return Err(BadPattern(
                "export= is empty: give a path pattern such as /vms/*.vmdk".into(),
            ));
        }
        let mut tokens = Vec::new();
        let mut chars = pattern.chars();
        while let Some(c) = chars.next() {
            tokens.push(match c {
                '*' => Token::Any,
                '?' => Token::One,
                '\\' => Token::Literal(chars.next().ok_or_else(|| {
                    BadPattern(format!(
                        "export={pattern}: ends with '\\'; escape it as '\\\\'"
                    ))
                })?),
                c => Token::Literal(c),
            });
        }
        Ok(Wildcard {
            text: pattern.to_string(),
            tokens,
        })
    }

    /// The pattern as given.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `name` matches the whole pattern.
    pub fn matches(&self, name: &str) -> bool {
        let name: Vec<char> = name.chars().collect();
        matches(&self.tokens, &name)
    }
}

/// Classic backtracking over the last `*`: linear in practice, and a `*`
/// never needs to look past a `/`, which bounds the retries per component.
fn matches(tokens: &[Token], name: &[char]) -> bool {
    let (mut t, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match tokens.get(t) {
            Some(Token::Literal(c)) if *c == name[n] => {
                t += 1;
                n += 1;
                continue;
            }
            Some(Token::One) if name[n] != '/' => {
                t += 1;
                n += 1;
                continue;
            }
            Some(Token::Any) => {
                star = Some((t, n));
                t += 1;
                continue;
            }
            _ => {}
        }
        // Mismatch: let the last `*` take one more character, unless that
        // character is a separator it may not cross.
        match star {
            Some((st, sn)) if name[sn] != '/' => {
                star = Some((st, sn + 1));
                t = st + 1;
                n = sn + 1;
            }
            _ => return false,
        }
    }
    tokens[t..].iter().all(|t| *t == Token::Any)
}

/// Checks that a client-supplied disk path is one a user could mean: an
/// absolute local path or a `[datastore] path`, without `.` or `..`
/// components, empty components or control characters, so a wildcard
/// cannot be used to step outside the directories it names.
pub fn check_path(path: &str) -> Result<(), BadPath> {
    let bad = |why: &str| Err(BadPath(why.into()));
    if path.chars().any(char::is_control) {
        return bad("the path holds control characters");
    }
    let rest = if path.starts_with('[') {
        return DatastorePath::parse(path)
            .map(drop)
            .map_err(|e| BadPath(e.to_string()));
    } else if let Some(rest) = path.strip_prefix('/') {
        rest
    } else {
        return bad("the path is neither absolute nor a [datastore] path");
    };
    for c in rest.split('/') {
        if c.is_empty() || c == "." || c == ".." {
            return bad("the path has an empty, '.' or '..' component: give the plain path");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_stays_in_one_component() {
        let w = Wildcard::new("/vms/*.vmdk").unwrap();
        assert!(w.matches("/vms/a.vmdk"));
        assert!(w.matches("/vms/.vmdk"));
        assert!(w.matches("/vms/a.b.vmdk"));
        assert!(!w.matches("/vms/sub/a.vmdk"));
        assert!(!w.matches("/vms/a.vmdkx"));
        assert!(!w.matches("/other/a.vmdk"));
        let w = Wildcard::new("/vms/*/*-flat.vmdk").unwrap();
        assert!(w.matches("/vms/web/web-flat.vmdk"));
        assert!(!w.matches("/vms/web/x/web-flat.vmdk"));
        let w = Wildcard::new("/vms/*").unwrap();
        assert!(w.matches("/vms/"));
        assert!(!w.matches("/vms/a/b"));
    }

    #[test]
    fn question_mark_escapes_and_brackets() {
        let w = Wildcard::new("/d/disk?.vmdk").unwrap();
        assert!(w.matches("/d/disk1.vmdk"));
        assert!(!w.matches("/d/disk.vmdk"));
        assert!(!w.matches("/d/disk/.vmdk"));
        let w = Wildcard::new(r"/d/\*.vmdk").unwrap();
        assert!(w.matches("/d/*.vmdk"));
        assert!(!w.matches("/d/a.vmdk"));
        let w = Wildcard::new("[datastore 1] web/*.vmdk").unwrap();
        assert!(w.matches("[datastore 1] web/web.vmdk"));
        assert!(w.matches("[datastore 1] web/web_1.vmdk"));
        assert!(!w.matches("[datastore 2] web/web.vmdk"));
        assert!(!w.matches("[datastore 1] db/db.vmdk"));
        let w = Wildcard::new("[*] *-?/*.vmdk").unwrap();
        assert!(w.matches("[ds] vm-1/vm.vmdk"));
        assert!(!w.matches("[ds/x] vm-1/vm.vmdk"));
        assert!(Wildcard::new("").is_err());
        assert!(Wildcard::new("/a\\").is_err());
    }

    #[test]
    fn utf8_names() {
        let w = Wildcard::new("[données] vm-é/*.vmdk").unwrap();
        assert!(w.matches("[données] vm-é/disque-ü.vmdk"));
        let w = Wildcard::new("/d/?.vmdk").unwrap();
        assert!(w.matches("/d/é.vmdk"));
    }

    #[test]
    fn paths_cannot_escape() {
        assert!(check_path("/vms/a.vmdk").is_ok());
        assert!(check_path("[ds] vm/a.vmdk").is_ok());
        for bad in [
            "/vms/../etc/passwd",
            "/vms/./a.vmdk",
            "/vms//a.vmdk",
            "relative.vmdk",
            "/vms/a\n.vmdk",
            "[ds] vm/../../x.vmdk",
        ] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
    }
}
