//! The command line: parse, re-exec for the library path, then either
//! print something (`--help`, `--version`, `--dump-plugin`), go to the
//! background, or serve.
//!
//! Order matters: the re-exec happens before any secret is read (and
//! takes any secret off the command line), and VDDK is initialised only
//! in the process that serves (after the background copy has been
//! started).

mod args;
mod ask_user;
mod daemon;
mod dump;
mod help;
mod layers;
mod listen;
mod logger;
mod open_exports;
mod privileges;
mod probes;

mod run;
mod secrets;
mod selinux;
mod serve;
mod signals;
mod stats;
mod thumbprint_cmd;
mod tls_flags;

use args::Action;
use daemon::Readiness;
use vddk::library_path as reexec;
use vddk_nbd::params::{self, Secrets, VddkParams};

/// The name this program was started as: `nbdkit` through a link of that
/// name (messages then take nbdkit's shape), else `vddk-nbd`.
pub fn program() -> &'static str {
    static NAME: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        let argv0 = std::env::args_os().next().unwrap_or_default();
        let base = std::path::Path::new(&argv0)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if base == "nbdkit" {
            "nbdkit"
        } else {
            "vddk-nbd"
        }
    })
}

fn usage_error(msg: &dyn std::fmt::Display) -> i32 {
    let p = program();
    eprintln!("{p}: {msg}");
    eprintln!("Try '{p} --help' for more information.");
    1
}

fn error(msg: &str) -> i32 {
    eprintln!("{}: error: {msg}", program());
    1
}

/// The vddk plugin's table entry.
fn probes_vddk() -> &'static vddk_nbd::plugins::PluginInfo {
    &vddk_nbd::plugins::PLUGINS[0]
}

/// Prints `text` on stdout; a closed stdout is not an error worth a panic.
fn print(text: &str) -> i32 {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => 0,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => 0,
        Err(_) => 1,
    }
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
    let named_plugin = opts.plugin_named.then_some(opts.plugin);
    match opts.action {
        Action::Help => {
            let layers = probes::layer_help(&opts.filters, named_plugin);
            return print(&format!("{}{layers}", help::usage(program())));
        }
        Action::Version => {
            return print(&probes::version(program(), &opts.filters, named_plugin));
        }
        Action::DumpConfig => return print(&probes::dump_config(program())),
        Action::LongOptions => return print(&args::long_options()),
        Action::ShortOptions => return print(&args::short_options()),
        Action::DumpPlugin | Action::Serve => {}
    }
    logger::init(opts.verbose);
    logger::set_plugin(opts.plugin.name);
    debug_flags(&opts);
    let routed = layers::route(&opts);
    let filters = match layers::stack(&opts, &routed) {
        Ok(f) => f,
        Err(e) => return error(&e),
    };
    if opts.plugin.name == "vddk" {
        vddk_main(&opts, &routed.plugin, filters)
    } else {
        local_main(&opts, &routed.plugin, filters)
    }
}

/// Notes the `-D` flags that are acted on elsewhere.
fn debug_flags(opts: &args::Options) {
    for f in &opts.debug_flags {
        match (f.scope.as_str(), f.name.as_str()) {
            ("vddk", "stats") => {
                log::debug!("-D vddk.stats={}: call statistics at exit", f.value)
            }
            ("vddk", "datapath" | "diskinfo" | "extents") | ("nbdkit", "backend.datapath") => {}
            _ => log::debug!("-D {}.{}={}: accepted, no effect", f.scope, f.name, f.value),
        }
    }
    if let Some(n) = opts.threads {
        log::debug!("-t {n}: used as the bound on requests in flight per disk");
    }
}

/// The checks and set-up every plugin's server needs, then serving.
fn serve_with(
    opts: &args::Options,
    source: serve::Source<'_>,
    filters: vddk_nbd::filters::Stack,
    secrets: &Secrets,
) -> i32 {
    // Checked before going to the background, so that a certificate
    // problem reaches the terminal; the serving process loads them again.
    let tls = match tls_flags::load(opts) {
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
    if !foreground {
        return daemon::start(secrets, opts.verbose);
    }
    match serve::run(opts, source, filters, tls, identity.as_ref(), readiness) {
        Ok(code) => code,
        Err(e) => {
            readiness.failed(&e);
            error(&e)
        }
    }
}

/// The `file`, `null` and `memory` plugins.
fn local_main(
    opts: &args::Options,
    pairs: &[(String, String)],
    filters: vddk_nbd::filters::Stack,
) -> i32 {
    if opts.action == Action::DumpPlugin {
        return print(&probes::plugin_fields(opts.plugin));
    }
    let params = vddk_nbd::params::Params::new(pairs.to_vec());
    let read_only = opts.read_only || filters.read_only_below();
    let exports = match layers::local_exports(opts, &params, read_only) {
        Ok(e) => e,
        Err(e) => return error(&e),
    };
    serve_with(
        opts,
        serve::Source::Local(exports),
        filters,
        &Secrets::default(),
    )
}

/// The `vddk` plugin: parameters, secrets and the library path first.
/// A parameter the `vddk` crate refused; a thumbprint that is not one
/// also gets the server's real one, when it can be fetched.
fn explain(p: &params::VddkParams, e: &params::connect::BadValue) -> String {
    let hint = (e.key == "thumbprint")
        .then(|| params::trust::server_thumbprint_hint(p))
        .flatten();
    match hint {
        Some(h) => format!("{e}; {h}"),
        None => e.to_string(),
    }
}

fn vddk_main(
    opts: &args::Options,
    pairs: &[(String, String)],
    filters: vddk_nbd::filters::Stack,
) -> i32 {
    let mut params = match params::vddk_plugin::parse(pairs) {
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
    if opts.action == Action::DumpPlugin {
        return dump::run(&params);
    }
    if let Err(e) = ask_user::fill(&mut params) {
        return error(&e);
    }
    if let Err(e) = params::vddk_plugin::validate(&params)
        .map_err(|e| e.to_string())
        .and_then(|()| params::connect::check(&params).map_err(|e| explain(&params, &e)))
    {
        return error(&e);
    }
    // Read the secrets once: in the background case here, in the process
    // that still has the user's terminal and descriptors.
    let secrets = match Secrets::resolve(&params) {
        Ok(s) => s,
        Err(e) => {
            let e = e.to_string();
            Readiness::current().failed(&e);
            return error(&e);
        }
    };
    let source = serve::Source::Vddk {
        params: &params,
        secrets: &secrets,
    };
    serve_with(opts, source, filters, &secrets)
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
        Some(dir) => Err(reexec::LibraryPathError { dir, source: e }.to_string()),
        None => {
            log::warn!("the secret stays on the command line: {e}");
            Ok(())
        }
    }
}
