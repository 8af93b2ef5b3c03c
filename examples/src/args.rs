//! Command lines of the form `PROGRAM [FLAGS] [key=value ...] [DISK]`.
//!
//! Words starting with `-` are the program's own flags (`--name VALUE`,
//! `--name=VALUE`, `-x VALUE`); every other word is a connection parameter,
//! split by [`vddk_nbd::config::split_param`] exactly as `vddk-nbd` does
//! (a bare word is the disk, `file=`). `--` ends the flags.

use std::ffi::OsString;

use vddk_nbd::config::params::{self, VddkParams};

/// One flag a program accepts.
#[derive(Debug, Clone, Copy)]
pub struct Flag {
    /// The long name, without `--`.
    pub long: &'static str,
    /// An optional one-letter form.
    pub short: Option<char>,
    /// The value's placeholder in `--help`, or `None` for a switch.
    pub value: Option<&'static str>,
    /// One line for `--help`.
    pub help: &'static str,
}

/// The flags every program has.
pub const COMMON: &[Flag] = &[
    Flag {
        long: "help",
        short: Some('h'),
        value: None,
        help: "print this help and exit",
    },
    Flag {
        long: "verbose",
        short: Some('v'),
        value: None,
        help: "print VDDK's log messages and debugging output on stderr",
    },
];

/// What a program is, for its parser and its `--help`.
#[derive(Debug, Clone, Copy)]
pub struct Program {
    /// The program name.
    pub name: &'static str,
    /// The synopsis lines after `Usage:`.
    pub usage: &'static str,
    /// What it does, a paragraph.
    pub about: &'static str,
    /// Its own flags (the [`COMMON`] ones are added).
    pub flags: &'static [Flag],
    /// Examples and notes printed at the end of `--help`.
    pub notes: &'static str,
}

/// A parsed command line.
#[derive(Debug, Default)]
pub struct Parsed {
    flags: Vec<(&'static str, Option<String>)>,
    /// The connection parameters, in order, bare words as `file`.
    pub pairs: Vec<(String, String)>,
}

impl Parsed {
    /// Whether a switch (or a valued flag) was given.
    pub fn has(&self, long: &str) -> bool {
        self.flags.iter().any(|(n, _)| *n == long)
    }

    /// The last value given to a flag.
    pub fn value(&self, long: &str) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|(n, _)| *n == long)
            .and_then(|(_, v)| v.as_deref())
    }

    /// Every value given to a repeatable flag, split at commas.
    pub fn list(&self, long: &str) -> Vec<&str> {
        self.flags
            .iter()
            .filter(|(n, _)| *n == long)
            .filter_map(|(_, v)| v.as_deref())
            .flat_map(|v| v.split(','))
            .filter(|s| !s.is_empty())
            .collect()
    }

    /// The connection parameters, typed; not yet [validated](params::validate).
    pub fn params(&self) -> Result<VddkParams, String> {
        params::parse(&self.pairs).map_err(|e| e.to_string())
    }

    /// Whether `-v` was given.
    pub fn verbose(&self) -> bool {
        self.has("verbose")
    }
}

impl Program {
    fn find_long(&self, name: &str) -> Option<&'static Flag> {
        COMMON.iter().chain(self.flags).find(|f| f.long == name)
    }

    fn find_short(&self, c: char) -> Option<&'static Flag> {
        COMMON.iter().chain(self.flags).find(|f| f.short == Some(c))
    }

    /// Parses the arguments after the program name.
    ///
    /// # Errors
    /// A message naming the offending word, ready to print.
    pub fn parse<I: IntoIterator<Item = OsString>>(&self, args: I) -> Result<Parsed, String> {
        let mut out = Parsed::default();
        let mut words = args.into_iter();
        let mut flags_done = false;
        let mut bare: Option<String> = None;
        while let Some(word) = words.next() {
            let word = word
                .into_string()
                .map_err(|w| format!("argument {w:?} is not valid UTF-8"))?;
            if !flags_done && word == "--" {
                flags_done = true;
                continue;
            }
            if flags_done || !word.starts_with('-') || word == "-" {
                if vddk_nbd::config::as_pair(&word).is_none() {
                    if let Some(first) = &bare {
                        return Err(format!(
                            "two disks given ('{first}' and '{word}'): give one, as a bare \
                             word or file=DISK"
                        ));
                    }
                    bare = Some(word.clone());
                }
                out.pairs.push(vddk_nbd::config::split_param(&word));
                continue;
            }
            let (flag, inline) = if let Some(long) = word.strip_prefix("--") {
                let (name, inline) = match long.split_once('=') {
                    Some((n, v)) => (n, Some(v.to_string())),
                    None => (long, None),
                };
                let flag = self.find_long(name).ok_or_else(|| {
                    format!("unknown option '--{name}'; see '{} --help'", self.name)
                })?;
                (flag, inline)
            } else {
                let mut chars = word[1..].chars();
                let c = chars.next().unwrap_or('-');
                let flag = self
                    .find_short(c)
                    .ok_or_else(|| format!("unknown option '-{c}'; see '{} --help'", self.name))?;
                let rest: String = chars.collect();
                (flag, (!rest.is_empty()).then_some(rest))
            };
            let value = match (flag.value, inline) {
                (None, None) => None,
                (None, Some(_)) => return Err(format!("option --{} takes no value", flag.long)),
                (Some(_), Some(v)) => Some(v),
                (Some(meta), None) => Some(
                    words
                        .next()
                        .and_then(|w| w.into_string().ok())
                        .ok_or_else(|| format!("option --{} needs a value ({meta})", flag.long))?,
                ),
            };
            out.flags.push((flag.long, value));
        }
        Ok(out)
    }

    /// The `--help` text.
    pub fn help(&self) -> String {
        let mut s = format!(
            "Usage:\n{}\n\n{}\n\nOptions:\n",
            self.usage,
            wrap(self.about, 78)
        );
        for f in self.flags.iter().chain(COMMON) {
            let short = f.short.map(|c| format!("-{c}, ")).unwrap_or_default();
            let long = match f.value {
                Some(v) => format!("--{} {v}", f.long),
                None => format!("--{}", f.long),
            };
            s.push_str(&format!("  {:<28} {}\n", format!("{short}{long}"), f.help));
        }
        s.push_str(CONNECTION_HELP);
        if !self.notes.is_empty() {
            s.push('\n');
            s.push_str(self.notes);
            if !self.notes.ends_with('\n') {
                s.push('\n');
            }
        }
        s
    }
}

/// Breaks `text` into lines of at most `width` columns at spaces.
fn wrap(text: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line = 0;
    for word in text.split_whitespace() {
        if line > 0 && line + 1 + word.len() > width {
            out.push('\n');
            line = 0;
        } else if line > 0 {
            out.push(' ');
            line += 1;
        }
        out.push_str(word);
        line += word.len();
    }
    out
}

/// The connection parameters, as `vddk-nbd --help` describes them.
pub const CONNECTION_HELP: &str = "
Connection parameters (the same as vddk-nbd and nbdkit vddk):
  [file=]DISK                  local disk by absolute path, or '[datastore] dir/disk.vmdk'
  libdir=DIR                   VDDK directory (holding lib64/); default $VDDK_LIBDIR
  config=FILE                  VDDK configuration file
  server=HOST                  ESXi or vCenter host (any remote parameter makes the disk remote)
  user=NAME password=SECRET    credentials; password=- prompts, =+FILE reads a file, =-FD a descriptor
  cookie=COOKIE                a vSphere session cookie instead of user and password
  thumbprint=AA:BB:...         the server's SHA-1 certificate thumbprint
  vm=moref=ID                  the VM (moref=vm-16 on vCenter, moref=16 on ESXi)
  snapshot=snapshot-N          read the disk as it was in that snapshot
  transports=nbdssl:nbd        transport modes to try, in order
  port=N nfchostport=N         server ports (default 443 and 902)
  compression=zlib|fastlz|skipz   single-link=true   unbuffered=true
";

#[cfg(test)]
mod tests {
    use super::*;

    const P: Program = Program {
        name: "t",
        usage: "  t [OPTIONS] DISK",
        about: "test",
        flags: &[
            Flag {
                long: "output",
                short: Some('o'),
                value: Some("FILE"),
                help: "where",
            },
            Flag {
                long: "json",
                short: None,
                value: None,
                help: "json",
            },
        ],
        notes: "",
    };

    fn parse(words: &[&str]) -> Result<Parsed, String> {
        P.parse(words.iter().map(OsString::from))
    }

    #[test]
    fn flags_and_params_mix() {
        let p = parse(&[
            "--json",
            "libdir=/l",
            "-o",
            "out",
            "/d.vmdk",
            "--output=last",
        ])
        .unwrap();
        assert!(p.has("json") && !p.verbose());
        assert_eq!(p.value("output"), Some("last"));
        assert_eq!(
            p.pairs,
            vec![
                ("libdir".to_string(), "/l".to_string()),
                ("file".to_string(), "/d.vmdk".to_string())
            ]
        );
        let p = parse(&["-oX", "--", "-odd.vmdk"]).unwrap();
        assert_eq!(p.value("output"), Some("X"));
        assert_eq!(p.pairs[0].1, "-odd.vmdk");
    }

    #[test]
    fn mistakes_are_named() {
        assert!(parse(&["--nope"]).unwrap_err().contains("'--nope'"));
        assert!(parse(&["--output"]).unwrap_err().contains("needs a value"));
        assert!(parse(&["--json=1"]).unwrap_err().contains("takes no value"));
        assert!(parse(&["/a", "/b"]).unwrap_err().contains("two disks"));
        assert!(parse(&["fiel=/x"])
            .unwrap()
            .params()
            .unwrap_err()
            .contains("unknown parameter"));
    }

    #[test]
    fn help_lists_flags_and_parameters() {
        let h = P.help();
        assert!(h.contains("-o, --output FILE") && h.contains("--help"));
        assert!(h.contains("thumbprint=") && h.contains("libdir=DIR"));
        assert_eq!(wrap("aa bb cc", 5), "aa bb\ncc");
    }
}
