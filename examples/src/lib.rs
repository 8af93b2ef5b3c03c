//! Shared pieces of the example programs (`vddk-info`, `vddk-copy`,
//! `vddk-create`, `vddk-bench`).
//!
//! Every program takes the connection parameters of `vddk-nbd` (and of
//! `nbdkit vddk`): `key=value` words such as `libdir=`, `server=`,
//! `user=`, `password=`, `thumbprint=`, `vm=`, with the disk given as
//! `file=DISK` or as a bare word. They are parsed by
//! [`vddk_nbd::params`], so both programs accept exactly the same
//! spellings. Flags of each program start with `-` and are parsed by
//! [`clap`].
//!
//! - [`cli`]: flags plus connection parameters, `--help`, and logging
//!   ([`env_logger`]).
//! - [`session`]: load VDDK, connect and open the disk, with errors that
//!   say what to do.
//! - [`copy`]: the pipelined copy engine behind `vddk-copy` and
//!   `vddk-create --fill-from`, with its resume state and SHA-256 ([`sha2`]).
//! - [`bench`](mod@bench): the measuring loop of `vddk-bench`.
//! - [`progress`] ([`indicatif`]) and [`units`]: what the programs print with.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bench;
pub mod cli;
pub mod copy;
pub mod progress;
pub mod session;
pub mod units;

/// The whole life of an example program: parses its command line (exit
/// status 2 on a usage error), answers `--help`, starts logging, runs
/// `body`, and exits 0, or 1 after printing the error `body` returned.
pub fn run_program<P: cli::Program>(body: impl FnOnce(&P) -> Result<(), String>) -> ! {
    let args = cli::parse::<P>();
    let name = P::command().get_name().to_string();
    match body(&args) {
        Ok(()) => std::process::exit(0),
        Err(e) => std::process::exit(fail(&name, &e)),
    }
}

/// Prints `PROGRAM: error: MSG` on stderr and returns exit status 1.
pub fn fail(program: &str, msg: &dyn std::fmt::Display) -> i32 {
    eprintln!("{program}: error: {msg}");
    1
}
