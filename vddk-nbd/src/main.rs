//! `vddk-nbd`: serves a VMware disk over NBD, taking the command lines
//! users already write for `nbdkit vddk`.
#![forbid(unsafe_code)]

mod cli;

fn main() {
    std::process::exit(cli::main());
}
