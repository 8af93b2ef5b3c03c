//! The command line: parse, re-exec for the library path, then either
//! print something (`--help`, `--version`, `--dump-plugin`), go to the
//! background, or serve.
//!
//! Order matters: the re-exec happens before any secret is read, and
//! VDDK is initialised only in the process that serves (after the
//! background copy has been started).

mod args;
mod daemon;
mod dump;
mod exports;
mod help;
mod listen;
mod logger;

mod run;
mod serve;
mod signals;
mod stats;
mod thumbprint;
mod tls;

use args::Action;
use daemon::Readiness;
use vddk_nbd::config;

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
    let words: Vec<String> = std::env::args().skip(1).collect();
    if words.first().map(String::as_str) == Some("thumbprint") {
        return thumbprint::run(&words[1..]);
    }
    let opts = match args::parse(std::env::args_os().skip(1)) {
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

    let params = match config::params::parse(&opts.params) {
        Ok(p) => p,
        Err(e) => return error(&e.to_string()),
    };
    if let Some(libdir) = &params.libdir {
        if let Err(e) = config::reexec::reexec_if_needed(libdir) {
            return error(&e);
        }
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

    if let Err(e) = config::params::validate(&params)
        .map_err(|e| e.to_string())
        .and_then(|()| config::connect::check(&params))
    {
        return error(&e);
    }

    // Checked before going to the background, so that a certificate
    // problem reaches the terminal; the serving process loads them again.
    let tls = match tls::load(&opts) {
        Ok(t) => t,
        Err(e) => return error(&e),
    };

    let readiness = Readiness::current();
    let foreground = opts.stays_in_foreground()
        || readiness == Readiness::DaemonChild
        || listen::socket_activated();

    // Read the secret once: in the background case here, in the process
    // that still has the user's terminal and descriptors.
    let secret = match params.password.as_ref().map(|p| p.resolve()).transpose() {
        Ok(s) => s,
        Err(e) => {
            readiness.failed(&e);
            return error(&e);
        }
    };

    if !foreground {
        return daemon::start(secret.as_deref(), opts.verbose);
    }
    match serve::run(&opts, &params, secret, tls, readiness) {
        Ok(code) => code,
        Err(e) => {
            readiness.failed(&e);
            error(&e)
        }
    }
}
