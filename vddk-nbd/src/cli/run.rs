//! `--run CMD`: the captive mode. The command runs under `/bin/sh` with
//! the variables nbdkit sets, and the server lives as long as it does.

use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus};

use vddk_nbd::tls::TlsMode;

use super::daemon;
use super::listen::Listening;

/// Starts `sh -c CMD` with `$uri`, `$nbd`, `$port`, `$unixsocket`,
/// `$exportname` and `$tls` (0 off, 1 on, 2 required) set, and the
/// user's own `LD_LIBRARY_PATH`.
pub fn spawn(
    cmd: &str,
    listening: &Listening,
    export: &str,
    tls: TlsMode,
) -> Result<Child, String> {
    let uri = listening.uri(export, tls == TlsMode::Require);
    let mut c = Command::new("/bin/sh");
    c.arg("-c").arg(cmd);
    c.env("uri", &uri)
        .env("nbd", &uri)
        .env("exportname", export);
    c.env(
        "port",
        listening.port.map(|p| p.to_string()).unwrap_or_default(),
    );
    c.env(
        "unixsocket",
        listening
            .unix_path
            .as_ref()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default(),
    );
    let level = match tls {
        TlsMode::Off => "0",
        TlsMode::On => "1",
        TlsMode::Require => "2",
    };
    c.env("tls", level);
    daemon::scrub_env(&mut c);
    log::debug!("--run: sh -c {cmd:?} with uri={uri}");
    c.spawn()
        .map_err(|e| format!("--run: cannot start /bin/sh: {e}"))
}

/// The exit status to pass on: the command's own code, or 128 plus the
/// signal that killed it (as shells report it).
pub fn exit_code(status: ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        (None, None) => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::listen::Cleanup;

    #[test]
    fn variables_and_status() {
        let l = Listening {
            sockets: Vec::new(),
            port: Some(4321),
            host: Some("localhost".into()),
            unix_path: None,
            all_interfaces: false,
            cleanup: Cleanup::default(),
        };
        let mut child = spawn(
            r#"test "$uri" = nbd://localhost:4321/e && test "$nbd" = "$uri" && test "$port" = 4321 && test -z "$unixsocket" && test "$exportname" = e && test "$tls" = 0 && exit 7"#,
            &l,
            "e",
            TlsMode::Off,
        )
        .unwrap();
        assert_eq!(exit_code(child.wait().unwrap()), 7);
        let mut child = spawn(
            r#"test "$uri" = nbds://localhost:4321 && test "$tls" = 2 && exit 8"#,
            &l,
            "",
            TlsMode::Require,
        )
        .unwrap();
        assert_eq!(exit_code(child.wait().unwrap()), 8);
        let mut child = spawn("kill -9 $$", &l, "", TlsMode::Off).unwrap();
        assert_eq!(exit_code(child.wait().unwrap()), 128 + 9);
    }
}
