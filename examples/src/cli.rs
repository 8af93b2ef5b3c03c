//! Command lines of the form `PROGRAM [FLAGS] [key=value ...] [DISK]`,
//! and logging.
//!
//! Each program's own flags are a [`clap`] derive struct that flattens
//! [`Common`]; every word that is not a flag is a connection parameter,
//! split by [`vddk_nbd::params::split_param`] exactly as `vddk-nbd` does
//! (a bare word is the disk, `file=`). Flags and parameters mix in any
//! order; `--` ends the flags.
//!
//! Logging goes through [`env_logger`]: warnings by default, debugging
//! output with `-v`, and `RUST_LOG` directives on top of either.

use std::io::Write;

use clap::{Args, Parser};
use vddk_nbd::params::vddk_plugin::{self, VddkParams};

/// What every program takes besides its own flags.
#[derive(Debug, Clone, Default, Args)]
pub struct Common {
    /// Print VDDK's log messages and debugging output on stderr (RUST_LOG
    /// directives apply on top)
    #[arg(short, long)]
    pub verbose: bool,

    /// Connection parameters (key=value, listed below) and the disk,
    /// [file=]DISK; they mix freely with the options
    #[arg(value_name = "CONNECTION-PARAMETERS")]
    pub words: Vec<String>,
}

impl Common {
    /// The connection parameters, in order, bare words as `file`.
    pub fn pairs(&self) -> Vec<(String, String)> {
        self.words
            .iter()
            .map(|w| vddk_nbd::params::split_param(w))
            .collect()
    }

    /// Checks that at most one bare word (the disk) was given.
    ///
    /// # Errors
    /// Both disks named, ready to print.
    pub fn check_one_disk(&self) -> Result<(), String> {
        let mut bare = self
            .words
            .iter()
            .filter(|w| vddk_nbd::params::as_pair(w).is_none());
        match (bare.next(), bare.next()) {
            (Some(first), Some(second)) => Err(format!(
                "two disks given ('{first}' and '{second}'): give one, as a bare word or \
                 file=DISK"
            )),
            _ => Ok(()),
        }
    }

    /// The connection parameters, typed; not yet [validated](params::validate).
    ///
    /// # Errors
    /// An unknown key or a malformed value, as `vddk-nbd` reports it.
    pub fn params(&self) -> Result<VddkParams, String> {
        vddk_plugin::parse(&self.pairs()).map_err(|e| e.to_string())
    }
}

/// An example program's command line.
pub trait Program: Parser {
    /// The flags every program has.
    fn common(&self) -> &Common;
}

/// Declares an example program's flags: the struct given, as a clap
/// parser with the settings every program shares, [`Common`] flattened in
/// last as `common`, and its [`Program`] impl. The struct's own
/// `#[command(...)]` gives the name, usage, about and after-help.
#[macro_export]
macro_rules! program {
    (
        $(#[$($attr:tt)*])*
        struct $name:ident {
            $($fields:tt)*
        }
    ) => {
        #[derive(Debug, clap::Parser)]
        $(#[$($attr)*])*
        #[command(args_override_self = true, max_term_width = 100)]
        struct $name {
            $($fields)*
            #[command(flatten)]
            common: $crate::cli::Common,
        }

        impl $crate::cli::Program for $name {
            fn common(&self) -> &$crate::cli::Common {
                &self.common
            }
        }
    };
}

/// Parses the command line (exit status 2 on a usage error, 0 after
/// `--help`), starts logging, and returns the parsed flags.
pub fn parse<P: Program>() -> P {
    parse_from(std::env::args_os())
}

/// [`parse`] over the given words, the program name first.
pub fn parse_from<P: Program, I, T>(words: I) -> P
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let args = P::parse_from(words);
    if let Err(msg) = args.common().check_one_disk() {
        P::command()
            .error(clap::error::ErrorKind::ArgumentConflict, msg)
            .exit();
    }
    init_logging(args.common().verbose);
    args
}

/// The text after the options in `--help`: the connection parameters,
/// then `examples` under an `Examples:` heading.
pub fn after_help(examples: &str) -> String {
    format!("{CONNECTION_HELP}\nExamples:\n{examples}")
}

/// The connection parameters, as `vddk-nbd --help` describes them.
pub const CONNECTION_HELP: &str = "\
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

/// Installs the logger on stderr: debug level when `verbose`, warnings
/// otherwise, then `RUST_LOG`'s directives (so `RUST_LOG=vddk::library=trace`
/// adds to either, and a bare `RUST_LOG=info` replaces the default level).
///
/// Lines read `TARGET: LEVEL: MESSAGE`; VDDK's own arrive under the
/// target `vddk::library`. A progress bar on screen is cleared for each
/// line and drawn again below it.
pub fn init_logging(verbose: bool) {
    let _ = env_logger::Builder::new()
        .filter_level(if verbose {
            log::LevelFilter::Debug
        } else {
            log::LevelFilter::Warn
        })
        .parse_env(env_logger::Env::default())
        .format(|buf, record| {
            let msg = record.args().to_string();
            writeln!(
                buf,
                "{}: {}: {}",
                record.target(),
                record.level().as_str().to_ascii_lowercase(),
                msg.trim_end()
            )
        })
        .target(env_logger::Target::Pipe(Box::new(crate::progress::Stderr)))
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// A program with one valued flag and one switch.
    #[derive(Debug, Parser)]
    #[command(name = "t", args_override_self = true, after_help = after_help("  t /d.vmdk\n"))]
    struct T {
        /// Where
        #[arg(short, long, value_name = "FILE")]
        output: Option<String>,
        /// JSON
        #[arg(long)]
        json: bool,
        /// Comma lists
        #[arg(short, long, value_delimiter = ',', default_value = "1,8")]
        queue_depth: Vec<String>,
        #[command(flatten)]
        common: Common,
    }

    impl Program for T {
        fn common(&self) -> &Common {
            &self.common
        }
    }

    fn parse(words: &[&str]) -> Result<T, clap::Error> {
        let t = T::try_parse_from(std::iter::once("t").chain(words.iter().copied()))?;
        t.common
            .check_one_disk()
            .map_err(|m| T::command().error(clap::error::ErrorKind::ArgumentConflict, m))?;
        Ok(t)
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
        assert!(p.json && !p.common.verbose);
        assert_eq!(p.output.as_deref(), Some("last"));
        assert_eq!(
            p.common.pairs(),
            vec![
                ("libdir".to_string(), "/l".to_string()),
                ("file".to_string(), "/d.vmdk".to_string())
            ]
        );
        assert_eq!(p.queue_depth, ["1", "8"]);
        let p = parse(&["-oX", "-q", "4", "--", "-odd.vmdk"]).unwrap();
        assert_eq!(p.output.as_deref(), Some("X"));
        assert_eq!(p.common.pairs()[0].1, "-odd.vmdk");
        assert_eq!(p.queue_depth, ["4"]);
        let p = parse(&["-q", "1,2", "-q", "3", "password=-"]).unwrap();
        assert_eq!(p.queue_depth, ["1", "2", "3"]);
        assert_eq!(p.common.pairs()[0], ("password".into(), "-".into()));
    }

    #[test]
    fn mistakes_are_named() {
        let err = |w: &[&str]| parse(w).unwrap_err().to_string();
        assert!(err(&["--nope"]).contains("'--nope'"));
        assert!(err(&["--output"]).contains("a value is required"));
        assert!(err(&["--json=1"]).contains("unexpected value '1'"));
        assert!(err(&["/a", "/b"]).contains("two disks"));
        assert_eq!(parse(&["/a", "/b"]).unwrap_err().exit_code(), 2);
        assert!(parse(&["fiel=/x"])
            .unwrap()
            .common
            .params()
            .unwrap_err()
            .contains("unknown parameter"));
    }

    #[test]
    fn help_lists_flags_defaults_parameters_and_examples() {
        let h = T::command().render_help().to_string();
        assert!(
            h.contains("-o, --output <FILE>") && h.contains("--help"),
            "{h}"
        );
        assert!(h.contains("[default: 1,8]"), "{h}");
        assert!(h.contains("thumbprint=") && h.contains("libdir=DIR"), "{h}");
        assert!(h.contains("Examples:\n  t /d.vmdk"), "{h}");
    }
}
