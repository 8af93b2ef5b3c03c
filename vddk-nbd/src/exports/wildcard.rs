//! `export=` wildcards, matched as nbdkit 1.46 matches them (glibc's
//! `fnmatch` without flags): `*` matches any run of characters, `/`
//! included (so one pattern covers disks in several folders); `?` any one
//! character; `[...]` one character of a set (`[!...]` or `[^...]` not of
//! it, `a-z` a range); `\` makes the next character literal, so a
//! datastore name is written `\[datastore1\] web/*.vmdk`. A `[` without
//! its `]` is literal.

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

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(char),
    One,
    Any,
    Set {
        negated: bool,
        items: Vec<(char, char)>,
    },
}

impl Token {
    fn matches_one(&self, c: char) -> bool {
        match self {
            Token::Literal(l) => *l == c,
            Token::One => true,
            Token::Set { negated, items } => {
                items.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
            }
            Token::Any => false,
        }
    }
}

/// Reads a bracket expression after its `[`; `None` when it has no `]`
/// (the `[` is then literal).
fn set(chars: &[char]) -> Option<(Token, usize)> {
    let mut i = 0;
    let negated = matches!(chars.first(), Some('!' | '^'));
    if negated {
        i += 1;
    }
    let mut items = Vec::new();
    let mut first = true;
    loop {
        let mut c = *chars.get(i)?;
        if c == ']' && !first {
            return Some((Token::Set { negated, items }, i + 1));
        }
        first = false;
        if c == '\\' {
            i += 1;
            c = *chars.get(i)?;
        }
        i += 1;
        let range_end = match (chars.get(i), chars.get(i + 1)) {
            (Some('-'), Some(&e)) if e != ']' => Some(e),
            _ => None,
        };
        match range_end {
            Some(e) => {
                items.push((c, e));
                i += 2;
            }
            None => items.push((c, c)),
        }
    }
}

impl Wildcard {
    /// Compiles `pattern`; fails on an empty one or a trailing `\`.
    pub fn new(pattern: &str) -> Result<Wildcard, BadPattern> {
        if pattern.is_empty() {
            return Err(BadPattern(
                "export parameter should be a wildcard, not an empty string (e.g. /vms/*.vmdk)"
                    .into(),
            ));
        }
        let chars: Vec<char> = pattern.chars().collect();
        let mut tokens = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            i += 1;
            tokens.push(match c {
                '*' => Token::Any,
                '?' => Token::One,
                '\\' => {
                    let next = chars.get(i).copied().ok_or_else(|| {
                        BadPattern(format!(
                            "export={pattern}: ends with '\\'; escape it as '\\\\'"
                        ))
                    })?;
                    i += 1;
                    Token::Literal(next)
                }
                '[' => match set(&chars[i..]) {
                    Some((t, used)) => {
                        i += used;
                        t
                    }
                    None => Token::Literal('['),
                },
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

    /// The longest literal prefix, `\`-escaped for a pattern: what a
    /// pattern for several names starts with (virt-v2v builds its
    /// `export=` from the names' common prefix and `*.vmdk`).
    pub fn escape(literal: &str) -> String {
        let mut out = String::with_capacity(literal.len());
        for c in literal.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                out.push('\\');
            }
            out.push(c);
        }
        out
    }
}

/// Backtracking over the last `*`: linear in practice.
fn matches(tokens: &[Token], name: &[char]) -> bool {
    let (mut t, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match tokens.get(t) {
            Some(Token::Any) => {
                star = Some((t, n));
                t += 1;
                continue;
            }
            Some(tok) if tok.matches_one(name[n]) => {
                t += 1;
                n += 1;
                continue;
            }
            _ => {}
        }
        // Mismatch: let the last `*` take one more character.
        match star {
            Some((st, sn)) => {
                star = Some((st, sn + 1));
                t = st + 1;
                n = sn + 1;
            }
            None => return false,
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
    fn star_crosses_slashes_as_in_nbdkit_1_46() {
        let w = Wildcard::new("/vms/*.vmdk").unwrap();
        assert!(w.matches("/vms/a.vmdk"));
        assert!(w.matches("/vms/.vmdk"));
        assert!(w.matches("/vms/a.b.vmdk"));
        assert!(w.matches("/vms/sub/a.vmdk"));
        assert!(!w.matches("/other/a.vmdk"));
        assert!(!w.matches("/vms/a.vmdk.bak"));
        let w = Wildcard::new("/vms/*").unwrap();
        assert!(w.matches("/vms/"));
        assert!(w.matches("/vms/a/b"));
    }

    #[test]
    fn question_mark_sets_and_escapes() {
        let w = Wildcard::new("/d/disk?.vmdk").unwrap();
        assert!(w.matches("/d/disk1.vmdk"));
        assert!(!w.matches("/d/disk.vmdk"));
        let w = Wildcard::new(r"/d/\*.vmdk").unwrap();
        assert!(w.matches("/d/*.vmdk"));
        assert!(!w.matches("/d/a.vmdk"));
        // What virt-v2v writes: escaped brackets, then *.vmdk.
        let w = Wildcard::new(r"\[datastore 1\] web/*.vmdk").unwrap();
        assert!(w.matches("[datastore 1] web/web.vmdk"));
        assert!(w.matches("[datastore 1] web/sub/web_1.vmdk"));
        assert!(!w.matches("[datastore 2] web/web.vmdk"));
        // Unescaped, brackets are a set, as fnmatch reads them.
        let w = Wildcard::new("/d/disk[0-2].vmdk").unwrap();
        assert!(w.matches("/d/disk1.vmdk") && !w.matches("/d/disk3.vmdk"));
        let w = Wildcard::new("/d/[!a]*").unwrap();
        assert!(w.matches("/d/b") && !w.matches("/d/a"));
        let w = Wildcard::new("/d/[]x].vmdk").unwrap();
        assert!(w.matches("/d/].vmdk") && w.matches("/d/x.vmdk"));
        // A [ without its ] is literal.
        assert!(Wildcard::new("/d/[x").unwrap().matches("/d/[x"));
        assert!(Wildcard::new("").is_err());
        assert!(Wildcard::new("/a\\").is_err());
        assert_eq!(Wildcard::escape("[ds (3)] vm*/"), r"\[ds (3)\] vm\*/");
    }

    #[test]
    fn utf8_names() {
        let w = Wildcard::new(r"\[données\] vm-é/*.vmdk").unwrap();
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
