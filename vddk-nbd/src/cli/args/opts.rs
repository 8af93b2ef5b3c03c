//! The server's options: each one's spellings (`-r`, `--readonly`,
//! `--read-only`), whether it takes a value, and the lists
//! `--long-options` and `--short-options` print, which callers grep to
//! decide what they may pass.

/// The options, how they are spelled, and whether they take a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opt {
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
    OldStyle,
    SelinuxLabel,
    DumpConfig,
    LongOptions,
    ShortOptions,
    Tls,
    TlsCertificates,
    TlsVerifyPeer,
    TlsPsk,
    User,
    Group,
    RequestMemory,
    Unsupported(&'static str),
}

impl Opt {
    pub fn takes_value(self) -> bool {
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
                | Opt::SelinuxLabel
                | Opt::Tls
                | Opt::TlsCertificates
                | Opt::TlsPsk
                | Opt::User
                | Opt::Group
                | Opt::RequestMemory
        )
    }
}

/// The short options, as `--short-options` lists them.
const SHORT: &[(char, Opt)] = &[
    ('4', Opt::Ipv4),
    ('6', Opt::Ipv6),
    ('D', Opt::Debug),
    ('e', Opt::ExportName),
    ('f', Opt::Foreground),
    ('g', Opt::Group),
    ('h', Opt::Help),
    ('i', Opt::IpAddr),
    ('n', Opt::NewStyle),
    ('o', Opt::OldStyle),
    ('p', Opt::Port),
    ('P', Opt::PidFile),
    ('r', Opt::ReadOnly),
    ('s', Opt::Single),
    ('t', Opt::Threads),
    ('u', Opt::User),
    ('U', Opt::Unix),
    ('v', Opt::Verbose),
    ('V', Opt::Version),
];

/// The long options, as `--long-options` lists them (those this server
/// refuses are named so that the refusal is clear, and not listed).
const LONG: &[(&str, Opt)] = &[
    ("debug", Opt::Debug),
    ("dump-config", Opt::DumpConfig),
    ("dump-plugin", Opt::DumpPlugin),
    ("exit-with-parent", Opt::ExitWithParent),
    ("export", Opt::ExportName),
    ("export-name", Opt::ExportName),
    ("exportname", Opt::ExportName),
    ("filter", Opt::Filter),
    ("foreground", Opt::Foreground),
    ("group", Opt::Group),
    ("help", Opt::Help),
    ("ip-addr", Opt::IpAddr),
    ("ipaddr", Opt::IpAddr),
    ("ipv4-only", Opt::Ipv4),
    ("ipv6-only", Opt::Ipv6),
    ("long-options", Opt::LongOptions),
    ("new-style", Opt::NewStyle),
    ("newstyle", Opt::NewStyle),
    ("no-fork", Opt::Foreground),
    ("old-style", Opt::OldStyle),
    ("oldstyle", Opt::OldStyle),
    ("pid-file", Opt::PidFile),
    ("pidfile", Opt::PidFile),
    ("port", Opt::Port),
    ("read-only", Opt::ReadOnly),
    ("readonly", Opt::ReadOnly),
    ("request-memory", Opt::RequestMemory),
    ("run", Opt::Run),
    ("selinux-label", Opt::SelinuxLabel),
    ("short-options", Opt::ShortOptions),
    ("single", Opt::Single),
    ("stdin", Opt::Single),
    ("threads", Opt::Threads),
    ("tls", Opt::Tls),
    ("tls-certificates", Opt::TlsCertificates),
    ("tls-psk", Opt::TlsPsk),
    ("tls-verify-peer", Opt::TlsVerifyPeer),
    ("unix", Opt::Unix),
    ("user", Opt::User),
    ("verbose", Opt::Verbose),
    ("version", Opt::Version),
    ("mask-handshake", Opt::Unsupported("--mask-handshake")),
    ("swap", Opt::Unsupported("--swap")),
    ("vsock", Opt::Unsupported("--vsock")),
];

pub fn short_opt(c: char) -> Option<Opt> {
    SHORT.iter().find(|(s, _)| *s == c).map(|(_, o)| *o)
}

pub fn long_opt(name: &str) -> Option<Opt> {
    LONG.iter().find(|(n, _)| *n == name).map(|(_, o)| *o)
}

/// `--long-options`: one a line, as nbdkit prints them.
pub fn long_options() -> String {
    LONG.iter()
        .filter(|(_, o)| !matches!(o, Opt::Unsupported(_)))
        .map(|(n, _)| format!("--{n}\n"))
        .collect()
}

/// `--short-options`: one a line.
pub fn short_options() -> String {
    SHORT.iter().map(|(c, _)| format!("-{c}\n")).collect()
}
