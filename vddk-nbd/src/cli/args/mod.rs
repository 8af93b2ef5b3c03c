//! Command-line parsing: nbdkit's server flags, the optional `vddk` plugin
//! name, and the plugin's `key=value` parameters.
//!
//! Options may appear anywhere (before or after the plugin name and its
//! parameters), short flags may be bundled (`-fv`, `-Usock`), and long
//! options take their value either as `--port=1234` or `--port 1234`,
//! as with nbdkit's getopt-based parser. `--` ends the options.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;

use vddk_nbd::tls::TlsMode;

/// The default NBD port (IANA-assigned), as nbdkit uses.
pub const DEFAULT_PORT: u16 = 10809;

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Print usage and exit 0.
    Help,
    /// Print the version and exit 0.
    Version,
    /// Print nbdkit's plugin keys for the library and exit.
    DumpPlugin,
    /// Serve the disk.
    Serve,
}

/// Where `-U` asked to listen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnixSocket {
    /// A path given by the user.
    Path(PathBuf),
    /// `-U -`: a private socket in a fresh temporary directory.
    Private,
}

/// Everything the command line said, parsed but not yet acted on.
///
/// No secret is read here: `password=` values are kept as written and
/// resolved later (see `password.rs`), after any re-exec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// What to do.
    pub action: Action,
    /// `-r`: serve read-only.
    pub read_only: bool,
    /// `-p`: TCP port (None: the default, unless `-U`/`-s` replace TCP).
    pub port: Option<u16>,
    /// `-i`: address to listen on.
    pub ipaddr: Option<String>,
    /// `-4` / `-6`: restrict name resolution of `-i`.
    pub ip_family: Option<IpFamily>,
    /// `-U`: Unix socket.
    pub unix: Option<UnixSocket>,
    /// `-s`: one connection on stdin/stdout.
    pub single: bool,
    /// `-e`: export name.
    pub export_name: String,
    /// `-f`: stay in the foreground.
    pub foreground: bool,
    /// `-P`: pid file.
    pub pidfile: Option<PathBuf>,
    /// `-v`: debug messages on stderr.
    pub verbose: bool,
    /// `-D NAME.FLAG=VALUE`, in order.
    pub debug_flags: Vec<DebugFlag>,
    /// `-t`: requests in flight per connection.
    pub threads: Option<u32>,
    /// `--run CMD`.
    pub run: Option<String>,
    /// `--exit-with-parent`: stop when the process that started us exits.
    pub exit_with_parent: bool,
    /// `--tls`, if given.
    pub tls: Option<TlsMode>,
    /// `--tls-certificates DIR`.
    pub tls_certificates: Option<PathBuf>,
    /// `--tls-verify-peer`: clients must present a certificate the CA signed.
    pub tls_verify_peer: bool,
    /// `-u USER`: the user to become once the sockets are bound.
    pub user: Option<String>,
    /// `-g GROUP`: the group to become once the sockets are bound.
    pub group: Option<String>,
    /// The plugin parameters: `(key, value)` in order; a bare argument is
    /// recorded with the key `file`.
    pub params: Vec<(String, String)>,
}

/// `-4` or `-6`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpFamily {
    /// IPv4 only.
    V4,
    /// IPv6 only.
    V6,
}

/// One `-D` flag, split at its first `.` and `=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebugFlag {
    /// `vddk`, `nbdkit`, or a filter name.
    pub scope: String,
    /// The flag's name, e.g. `stats`.
    pub name: String,
    /// Its value as written.
    pub value: String,
}

impl Options {
    /// Whether the process stays attached to its parent (no daemon).
    pub fn stays_in_foreground(&self) -> bool {
        self.foreground || self.single || self.run.is_some() || self.exit_with_parent
    }
}

/// A command-line mistake; printed with a pointer to `--help`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

fn usage(msg: impl Into<String>) -> UsageError {
    UsageError(msg.into())
}

/// The options, how they are spelled, and whether they take a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opt {
    ReadOnly,
    Port,
    IpAddr,
    Ipv4,
    Ipv6,
    Unix,
    Single,
    ExportName,
    Foreground,
    PidFile,
    Verbose,
    Debug,
    Threads,
    Run,
    DumpPlugin,
    Version,
    Help,
    NewStyle,
    ExitWithParent,
    Filter,
    Tls,
    TlsCertificates,
    TlsVerifyPeer,
    TlsPsk,
    User,
    Group,
    Unsupported(&'static str),
}

impl Opt {
    fn takes_value(self) -> bool {
        matches!(
            self,
            Opt::Port
                | Opt::IpAddr
                | Opt::Unix
                | Opt::ExportName
                | Opt::PidFile
                | Opt::Debug
                | Opt::Threads
                | Opt::Run
                | Opt::Filter
                | Opt::Tls
                | Opt::TlsCertificates
                | Opt::TlsPsk
                | Opt::User
                | Opt::Group
        )
    }
}

fn short_opt(c: char) -> Option<Opt> {
    Some(match c {
        'r' => Opt::ReadOnly,
        'p' => Opt::Port,
        'i' => Opt::IpAddr,
        '4' => Opt::Ipv4,
        '6' => Opt::Ipv6,
        'U' => Opt::Unix,
        's' => Opt::Single,
        'e' => Opt::ExportName,
        'f' => Opt::Foreground,
        'P' => Opt::PidFile,
        'v' => Opt::Verbose,
        'D' => Opt::Debug,
        't' => Opt::Threads,
        'V' => Opt::Version,
        'h' => Opt::Help,
        'n' => Opt::NewStyle,
        'o' => Opt::Unsupported("-o (oldstyle protocol)"),
        'g' => Opt::Group,
        'u' => Opt::User,
        _ => return None,
    })
}

fn long_opt(name: &str) -> Option<Opt> {
    Some(match name {
        "readonly" | "read-only" => Opt::ReadOnly,
        "port" => Opt::Port,
        "ipaddr" | "ip-addr" => Opt::IpAddr,
        "ipv4-only" => Opt::Ipv4,
        "ipv6-only" => Opt::Ipv6,
        "unix" => Opt::Unix,
        "single" | "stdin" => Opt::Single,
        "exportname" | "export-name" | "export" => Opt::ExportName,
        "foreground" | "no-fork" => Opt::Foreground,
        "pidfile" | "pid-file" => Opt::PidFile,
        "verbose" => Opt::Verbose,
        "debug" => Opt::Debug,
        "threads" => Opt::Threads,
        "run" => Opt::Run,
        "dump-plugin" => Opt::DumpPlugin,
        "version" => Opt::Version,
        "help" => Opt::Help,
        "newstyle" | "new-style" => Opt::NewStyle,
        "filter" => Opt::Filter,
        "oldstyle" | "old-style" => Opt::Unsupported("--oldstyle"),
        "user" => Opt::User,
        "group" => Opt::Group,
        "exit-with-parent" => Opt::ExitWithParent,
        "tls" => Opt::Tls,
        "tls-certificates" => Opt::TlsCertificates,
        "tls-verify-peer" => Opt::TlsVerifyPeer,
        "tls-psk" => Opt::TlsPsk,
        "vsock" => Opt::Unsupported("--vsock"),
        "swap" => Opt::Unsupported("--swap"),
        "selinux-label" => Opt::Unsupported("--selinux-label"),
        "mask-handshake" => Opt::Unsupported("--mask-handshake"),
        "dump-config" => Opt::Unsupported("--dump-config (try --dump-plugin)"),
        _ => return None,
    })
}

/// Plugin names nbdkit users may type first; only `vddk` is served here.
fn is_plugin_name(arg: &str) -> bool {
    !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !arg.ends_with(".vmdk")
}

fn is_vddk_plugin_path(arg: &str) -> bool {
    arg.ends_with("/nbdkit-vddk-plugin.so")
}

/// Parses the arguments after the program name.
pub fn parse<I>(args: I) -> Result<Options, UsageError>
where
    I: IntoIterator<Item = OsString>,
{
    let mut args: Vec<String> = args
        .into_iter()
        .map(|a| {
            a.into_string()
                .map_err(|a| usage(format!("argument {a:?} is not valid UTF-8")))
        })
        .collect::<Result<_, _>>()?;
    args.reverse();

    let mut o = Options {
        action: Action::Serve,
        read_only: false,
        port: None,
        ipaddr: None,
        ip_family: None,
        unix: None,
        single: false,
        export_name: String::new(),
        foreground: false,
        pidfile: None,
        verbose: false,
        debug_flags: Vec::new(),
        threads: None,
        run: None,
        exit_with_parent: false,
        tls: None,
        tls_certificates: None,
        tls_verify_peer: false,
        user: None,
        group: None,
        params: Vec::new(),
    };
    let mut positionals = Vec::new();
    let mut dump_plugin = false;
    let mut version = false;
    let mut help = false;
    let mut options_ended = false;

    while let Some(arg) = args.pop() {
        if options_ended || arg == "-" || !arg.starts_with('-') {
            positionals.push(arg);
            continue;
        }
        if arg == "--" {
            options_ended = true;
            continue;
        }
        let mut found: Vec<(Opt, Option<String>, String)> = Vec::new();
        if let Some(long) = arg.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            let opt =
                long_opt(name).ok_or_else(|| usage(format!("unrecognized option '--{name}'")))?;
            let value =
                if opt.takes_value() {
                    match inline {
                        Some(v) => Some(v),
                        None => Some(args.pop().ok_or_else(|| {
                            usage(format!("option '--{name}' requires an argument"))
                        })?),
                    }
                } else if inline.is_some() && !matches!(opt, Opt::Unsupported(_)) {
                    return Err(usage(format!(
                        "option '--{name}' doesn't allow an argument"
                    )));
                } else {
                    None
                };
            found.push((opt, value, format!("--{name}")));
        } else {
            let body = &arg[1..];
            for (i, c) in body.char_indices() {
                let opt = short_opt(c).ok_or_else(|| usage(format!("invalid option -- '{c}'")))?;
                if opt.takes_value() {
                    let rest = &body[i + c.len_utf8()..];
                    let value = if rest.is_empty() {
                        args.pop()
                            .ok_or_else(|| usage(format!("option requires an argument -- '{c}'")))?
                    } else {
                        rest.to_string()
                    };
                    found.push((opt, Some(value), format!("-{c}")));
                    break;
                }
                found.push((opt, None, format!("-{c}")));
            }
        }
        for (opt, value, spelled) in found {
            apply(
                &mut o,
                opt,
                value,
                &spelled,
                &mut dump_plugin,
                &mut version,
                &mut help,
            )?;
        }
    }

    let mut positionals = positionals.into_iter().peekable();
    if let Some(first) = positionals.peek() {
        if !first.contains('=') {
            if first == "vddk" || is_vddk_plugin_path(first) {
                positionals.next();
            } else if is_plugin_name(first) {
                return Err(usage(format!(
                    "plugin '{first}' is not supported: vddk-nbd serves only the vddk plugin \
                     (write `vddk-nbd [vddk] [file=]DISK.vmdk ...`, or use nbdkit for other plugins)"
                )));
            }
        }
    }
    let mut bare_seen = false;
    for p in positionals {
        match vddk_nbd::params::as_pair(&p) {
            Some((k, v)) => o.params.push((k.to_string(), v.to_string())),
            None => {
                if bare_seen {
                    return Err(usage(format!(
                        "more than one bare parameter ('{p}'): only the file may be given \
                         without its key; write the others as key=value"
                    )));
                }
                bare_seen = true;
                o.params.push(("file".to_string(), p));
            }
        }
    }

    o.action = if help {
        Action::Help
    } else if version {
        Action::Version
    } else if dump_plugin {
        Action::DumpPlugin
    } else {
        Action::Serve
    };
    if o.action == Action::Serve {
        check_combinations(&o)?;
    }
    Ok(o)
}

fn apply(
    o: &mut Options,
    opt: Opt,
    value: Option<String>,
    spelled: &str,
    dump_plugin: &mut bool,
    version: &mut bool,
    help: &mut bool,
) -> Result<(), UsageError> {
    let v = value.unwrap_or_default();
    match opt {
        Opt::ReadOnly => o.read_only = true,
        Opt::Port => {
            o.port =
                Some(v.parse::<u16>().map_err(|_| {
                    usage(format!("{spelled}: '{v}' is not a port number (0-65535)"))
                })?)
        }
        Opt::IpAddr => o.ipaddr = Some(v),
        Opt::Ipv4 => o.ip_family = Some(IpFamily::V4),
        Opt::Ipv6 => o.ip_family = Some(IpFamily::V6),
        Opt::Unix => {
            o.unix = Some(if v == "-" {
                UnixSocket::Private
            } else if v.is_empty() {
                return Err(usage(format!("{spelled}: the socket path is empty")));
            } else {
                UnixSocket::Path(PathBuf::from(v))
            })
        }
        Opt::Single => o.single = true,
        Opt::ExportName => o.export_name = v,
        Opt::Foreground => o.foreground = true,
        Opt::PidFile => o.pidfile = Some(PathBuf::from(v)),
        Opt::Verbose => o.verbose = true,
        Opt::Debug => o.debug_flags.push(parse_debug_flag(&v)?),
        Opt::Threads => {
            let n = v.parse::<u32>().ok().filter(|n| *n > 0).ok_or_else(|| {
                usage(format!(
                    "{spelled}: '{v}' is not a positive number of threads"
                ))
            })?;
            o.threads = Some(n);
        }
        Opt::Run => {
            if v.trim().is_empty() {
                return Err(usage(format!("{spelled}: the command is empty")));
            }
            o.run = Some(v)
        }
        Opt::DumpPlugin => *dump_plugin = true,
        Opt::Version => *version = true,
        Opt::Help => *help = true,
        Opt::NewStyle => {}
        Opt::ExitWithParent => o.exit_with_parent = true,
        Opt::User | Opt::Group if v.is_empty() => {
            return Err(usage(format!("{spelled}: the name is empty")));
        }
        Opt::User => o.user = Some(v),
        Opt::Group => o.group = Some(v),
        Opt::Filter => {
            return Err(usage(format!(
                "--filter={v}: filters are not supported; vddk-nbd serves the vddk plugin only \
                 (use nbdkit to stack filters)"
            )))
        }
        Opt::Tls => o.tls = Some(parse_tls_mode(spelled, &v)?),
        Opt::TlsCertificates => {
            if v.is_empty() {
                return Err(usage(format!("{spelled}: the directory is empty")));
            }
            o.tls_certificates = Some(PathBuf::from(v))
        }
        Opt::TlsVerifyPeer => o.tls_verify_peer = true,
        Opt::TlsPsk => {
            return Err(usage(format!(
                "{spelled}: TLS with pre-shared keys is not supported by vddk-nbd; use X.509 \
                 certificates (--tls-certificates DIR, see the TLS section of the README), \
                 or nbdkit for PSK"
            )))
        }
        Opt::Unsupported(what) => {
            return Err(usage(format!("{what} is not supported by vddk-nbd")));
        }
    }
    Ok(())
}

/// `--tls` values as nbdkit reads them: `require` (or `required`,
/// `force`), or a boolean (`on`, `yes`, `true`, `1`, ... / `off`, ...).
fn parse_tls_mode(spelled: &str, v: &str) -> Result<TlsMode, UsageError> {
    let lower = v.to_ascii_lowercase();
    Ok(match lower.as_str() {
        "require" | "required" | "force" => TlsMode::Require,
        "1" | "true" | "t" | "yes" | "y" | "on" => TlsMode::On,
        "0" | "false" | "f" | "no" | "n" | "off" => TlsMode::Off,
        _ => {
            return Err(usage(format!(
                "{spelled}: '{v}' is not a TLS mode: use off, on or require"
            )))
        }
    })
}

/// Parses `SCOPE.FLAG=VALUE` as nbdkit's `-D` does.
pub fn parse_debug_flag(s: &str) -> Result<DebugFlag, UsageError> {
    let bad = || {
        usage(format!(
            "-D '{s}': debug flags are written PLUGIN.FLAG=N, for example -D vddk.stats=1"
        ))
    };
    let (lhs, value) = s.split_once('=').ok_or_else(bad)?;
    let (scope, name) = lhs.split_once('.').ok_or_else(bad)?;
    if scope.is_empty() || name.is_empty() || value.is_empty() {
        return Err(bad());
    }
    Ok(DebugFlag {
        scope: scope.to_string(),
        name: name.to_string(),
        value: value.to_string(),
    })
}

fn check_combinations(o: &Options) -> Result<(), UsageError> {
    if o.single && (o.unix.is_some() || o.port.is_some() || o.ipaddr.is_some()) {
        return Err(usage(
            "-s (serve on stdin/stdout) cannot be combined with -p, -i or -U",
        ));
    }
    if o.single && o.run.is_some() {
        return Err(usage("-s and --run cannot be combined"));
    }
    if o.unix.is_some() && (o.port.is_some() || o.ipaddr.is_some()) {
        return Err(usage(
            "-U cannot be combined with -p or -i: choose a Unix socket or TCP",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
