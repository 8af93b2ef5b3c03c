//! The command line: parse, re-exec for the library path, then either
//! print something (`--help`, `--version`, `--dump-plugin`), go to the
//! background, or serve.
//!
//! Order matters: the re-exec happens before any secret is read (and
//! takes any secret off the command line), and VDDK is initialised only
//! in the process that serves (after the background copy has been
//! started).

mod args;
mod daemon;
mod dump;
mod help;
mod listen;
mod logger;
mod open_exports;
mod privileges;

mod run;
mod secrets;
mod serve;
mod signals;
mod stats;
mod thumbprint_cmd;
mod tls_flags;

use args::Action;
use daemon::Readiness;
use vddk_nbd::params::{self, reexec, Secrets, VddkParams};

fn usage_error(msg: &dyn std::fmt::Display) -> i32 {
    eprintln!("vddk-nbd: {msg}");
    eprintln!("Try 'vddk-nbd --help' for more information.");
    1
}

fn error(msg: &str) -> i32 {
    eprintln!("vddk-nbd: error: {msg}");
    1
}

/// Runs the program; returns its exit status.
pub fn main() -> i32 {
    // args_os: `std::env::args` panics on a word that is not UTF-8, and
    // its message would repeat the word, secret or not.
    let words: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if words.first().is_some_and(|w| w == "thumbprint") {
        let rest: Vec<String> = words[1..]
            .iter()
            .map(|w| w.to_string_lossy().into_owned())
            .collect();
        return thumbprint_cmd::run(&rest);
    }
    if let Some(key) = secrets::non_utf8_secret(&words) {
        return usage_error(&format!(
            "{key}=: the value is not valid UTF-8 (VDDK takes UTF-8 credentials)"
        ));
    }
    let opts = match args::parse(words) {
        Ok(o) => o,
        Err(e) => return usage_error(&e),
    };
    match opts.action {
        Action::Help => {
            print!("{}", help::USAGE);
            return 0;
        }
        Action::Version => {
            println!("{}", help::version());
            return 0;
        }
        Action::DumpPlugin | Action::Serve => {}
    }
    logger::init(opts.verbose);

    let params = match params::vddk_plugin::parse(&opts.params) {
        Ok(p) => p,
        Err(e) => return error(&e.to_string()),
    };
    if params.has_secret() {
        if let Err(e) = secrets::no_core_dumps() {
            return error(&e);
        }
    }
    if let Err(e) = reexec_if_needed(&params) {
        return error(&e);
    }
    for f in &opts.debug_flags {
        match (f.scope.as_str(), f.name.as_str()) {
            ("vddk", "stats") => {
                log::debug!("-D vddk.stats={}: call statistics at exit", f.value)
            }
            _ => log::debug!("-D {}.{}={}: accepted, no effect", f.scope, f.name, f.value),
        }
    }
    if let Some(n) = opts.threads {
        log::debug!("-t {n}: used as the bound on requests in flight per disk");
    }

    if opts.action == Action::DumpPlugin {
        return dump::run(&params);
    }

    if let Err(e) = params::vddk_plugin::validate(&params)
        .map_err(|e| e.to_string())
        .and_then(|()| params::connect::check(&params))
    {
        return error(&e);
    }

    // Checked before going to the background, so that a certificate
    // problem reaches the terminal; the serving process loads them again.
    let tls = match tls_flags::load(&opts) {
        Ok(t) => t,
        Err(e) => return error(&e),
    };
    // Checked before anything starts, so a typo fails at once.
    let identity =
        match privileges::Identity::from_flags(opts.user.as_deref(), opts.group.as_deref()) {
            Ok(i) => i,
            Err(e) => return error(&e),
        };

    let readiness = Readiness::current();
    let foreground = opts.stays_in_foreground()
        || readiness == Readiness::DaemonChild
        || listen::socket_activated();

    // Read the secrets once: in the background case here, in the process
    // that still has the user's terminal and descriptors.
    let secrets = match Secrets::resolve(&params) {
        Ok(s) => s,
        Err(e) => {
            readiness.failed(&e);
            return error(&e);
        }
    };

    if !foreground {
        return daemon::start(&secrets, opts.verbose);
    }
    match serve::run(&opts, &params, &secrets, tls, identity.as_ref(), readiness) {
        Ok(code) => code,
        Err(e) => {
            readiness.failed(&e);
            error(&e)
        }
    }
}

/// Re-executes once if `LD_LIBRARY_PATH` needs VDDK's `lib64` first, or
/// a password or cookie is written on the command line: the new process
/// gets the secret through a pipe instead ([`secrets::moved_off_argv`]).
/// Returns only when no re-exec happened; an error only when the library
/// path could not be set.
fn reexec_if_needed(params: &VddkParams) -> Result<(), String> {
    let lib_dir = params
        .libdir
        .as_deref()
        .and_then(reexec::library_path_change);
    let mut argv: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    // Kept open until the exec: the new process reads them.
    let mut handovers = Vec::new();
    if params.has_literal_secret() {
        secrets::warn_about_literals(params);
        match secrets::literals(params).and_then(|s| secrets::moved_off_argv(&argv, &s)) {
            Ok((scrubbed, pipes)) => {
                argv = scrubbed;
                handovers = pipes;
            }
            Err(e) => log::warn!("the secret stays on the command line: {e}"),
        }
    }
    if lib_dir.is_none() && handovers.is_empty() {
        return Ok(());
    }
    let e = reexec::exec(argv, lib_dir.as_deref());
    match lib_dir {
        Some(dir) => Err(format!(
            "{e}; set LD_LIBRARY_PATH={} yourself",
            dir.display()
        )),
        None => {
            log::warn!("the secret stays on the command line: {e}");
            Ok(())
        }
    }
}
