//! Command-line parsing: nbdkit's server flags, `--filter`s, the plugin
//! name (`vddk` when none is given), and the `key=value` parameters of the
//! plugin and filters, routed to their layers later.
//!
//! Options may appear anywhere (before or after the plugin name and its
//! parameters), short flags may be bundled (`-fv`, `-Usock`), and long
//! options take their value either as `--port=1234` or `--port 1234`,
//! as with nbdkit's getopt-based parser. `--` ends the options.
//!
//! This parser is written by hand on purpose, while the examples use
//! clap: it must accept nbdkit's exact grammar, which argument-parser
//! crates do not model. A bare word is the plugin name or, after it, a
//! file (`file=` implied); `key=value` words go to the plugin or to the
//! filter that claims the key; options may follow those words; and the
//! output of `--help`, `--long-options` and `--short-options` must match
//! what nbdkit's callers probe for. A derive-based parser would either
//! reject these command lines or need as much code around it.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;

use vddk_nbd::tls::TlsMode;

mod opts;
use opts::{long_opt, short_opt, Opt};
pub use opts::{long_options, short_options};

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
    /// Print nbdkit's build configuration keys and exit.
    DumpConfig,
    /// List the long options, one a line, and exit.
    LongOptions,
    /// List the short options, one a line, and exit.
    ShortOptions,
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
    /// `--request-memory`: bytes of request data all connections may hold.
    pub request_memory: Option<u64>,
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
    /// The plugin named on the command line (`vddk` when none is).
    pub plugin: &'static vddk_nbd::plugins::PluginInfo,
    /// Whether the plugin was named (`--help` and `--version` then
    /// describe it).
    pub plugin_named: bool,
    /// `--filter`s, outermost first.
    pub filters: Vec<&'static vddk_nbd::filters::FilterInfo>,
    /// `-o`: the oldstyle handshake.
    pub oldstyle: bool,
    /// `--selinux-label`: the SELinux label of listening sockets.
    pub selinux_label: Option<String>,
    /// The plugin's and filters' parameters: `(key, value)` in order; a
    /// bare argument is recorded with the plugin's magic key (`file`).
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

/// A word that names a plugin rather than a disk: nbdkit plugin names
/// are short identifiers.
fn is_plugin_name(arg: &str) -> bool {
    !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !arg.ends_with(".vmdk")
}

/// nbdkit's vddk plugin named by its path.
fn is_vddk_plugin_path(arg: &str) -> bool {
    arg.ends_with("/nbdkit-vddk-plugin.so")
}

fn supported_plugins() -> String {
    vddk_nbd::plugins::PLUGINS
        .iter()
        .map(|p| p.name)
        .collect::<Vec<_>>()
        .join(", ")
}

fn supported_filters() -> String {
    vddk_nbd::filters::FILTERS
        .iter()
        .map(|f| f.name)
        .collect::<Vec<_>>()
        .join(", ")
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
        request_memory: None,
        run: None,
        exit_with_parent: false,
        tls: None,
        tls_certificates: None,
        tls_verify_peer: false,
        user: None,
        group: None,
        plugin: &vddk_nbd::plugins::PLUGINS[0],
        plugin_named: false,
        filters: Vec::new(),
        oldstyle: false,
        selinux_label: None,
        params: Vec::new(),
    };
    let mut positionals = Vec::new();
    let mut special = Special::default();
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
            apply(&mut o, opt, value, &spelled, &mut special)?;
        }
    }

    let mut positionals = positionals.into_iter().peekable();
    if let Some(first) = positionals.peek() {
        if !first.contains('=') {
            if is_vddk_plugin_path(first) {
                o.plugin_named = true;
                positionals.next();
            } else if let Some(p) = vddk_nbd::plugins::find(first) {
                o.plugin = p;
                o.plugin_named = true;
                positionals.next();
            } else if is_plugin_name(first) {
                return Err(usage(format!(
                    "plugin '{first}' is not supported: the plugins here are {}",
                    supported_plugins()
                )));
            }
        }
    }
    let magic = o.plugin.magic_key;
    let mut bare_seen = false;
    for p in positionals {
        match vddk_nbd::params::as_pair(&p) {
            Some((k, v)) => o.params.push((k.to_string(), v.to_string())),
            None => {
                if bare_seen {
                    return Err(usage(format!(
                        "more than one bare parameter ('{p}'): only the {magic} may be given \
                         without its key; write the others as key=value"
                    )));
                }
                bare_seen = true;
                o.params.push((magic.to_string(), p));
            }
        }
    }

    o.action = special.action();
    if o.action == Action::Serve {
        check_combinations(&o)?;
    }
    Ok(o)
}

/// The options that print something instead of serving.
#[derive(Default)]
struct Special {
    help: bool,
    version: bool,
    dump_plugin: bool,
    dump_config: bool,
    long_options: bool,
    short_options: bool,
}

impl Special {
    fn action(&self) -> Action {
        if self.help {
            Action::Help
        } else if self.version {
            Action::Version
        } else if self.dump_config {
            Action::DumpConfig
        } else if self.long_options {
            Action::LongOptions
        } else if self.short_options {
            Action::ShortOptions
        } else if self.dump_plugin {
            Action::DumpPlugin
        } else {
            Action::Serve
        }
    }
}

fn apply(
    o: &mut Options,
    opt: Opt,
    value: Option<String>,
    spelled: &str,
    special: &mut Special,
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
        Opt::RequestMemory => {
            let n = vddk_nbd::params::size::parse_size(&v)
                .map_err(|e| usage(format!("{spelled}: '{v}': {e}")))?;
            if n < 1 << 20 {
                return Err(usage(format!(
                    "{spelled}: '{v}' is less than 1M; give a size such as 256M or 1G"
                )));
            }
            o.request_memory = Some(n);
        }
        Opt::Run => {
            if v.trim().is_empty() {
                return Err(usage(format!("{spelled}: the command is empty")));
            }
            o.run = Some(v)
        }
        Opt::DumpPlugin => special.dump_plugin = true,
        Opt::DumpConfig => special.dump_config = true,
        Opt::LongOptions => special.long_options = true,
        Opt::ShortOptions => special.short_options = true,
        Opt::Version => special.version = true,
        Opt::Help => special.help = true,
        Opt::NewStyle => o.oldstyle = false,
        Opt::OldStyle => o.oldstyle = true,
        Opt::SelinuxLabel => {
            if v.is_empty() {
                return Err(usage(format!("{spelled}: the label is empty")));
            }
            o.selinux_label = Some(v)
        }
        Opt::ExitWithParent => o.exit_with_parent = true,
        Opt::User | Opt::Group if v.is_empty() => {
            return Err(usage(format!("{spelled}: the name is empty")));
        }
        Opt::User => o.user = Some(v),
        Opt::Group => o.group = Some(v),
        Opt::Filter => {
            let f = vddk_nbd::filters::find(&v).ok_or_else(|| {
                usage(format!(
                    "filter '{v}' is not supported: the filters here are {}",
                    supported_filters()
                ))
            })?;
            o.filters.push(f);
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
    if o.oldstyle && o.tls.is_some_and(|t| t != TlsMode::Off) {
        return Err(usage(
            "-o (oldstyle) and --tls cannot be combined: TLS needs the newstyle handshake",
        ));
    }
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
