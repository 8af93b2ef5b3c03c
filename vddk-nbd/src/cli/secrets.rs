//! Keeping passwords and session cookies out of sight.
//!
//! - A secret written on the command line (`password=SECRET`,
//!   `cookie=SECRET`) is in `/proc/PID/cmdline`, which every user of the
//!   machine can read. The program re-executes itself at once with each
//!   such word replaced by `password=-N`, N being a pipe that holds the
//!   secret ([`handover`](vddk_nbd::params::handover)), so the process
//!   that goes on to serve never shows it; the same exec puts VDDK's
//!   `lib64` on the library path when that is needed too.
//! - A process that holds a secret is marked non-dumpable: no core file
//!   is written if it crashes, and other processes of the same user
//!   cannot read its memory through `/proc/PID/mem` or ptrace.

use std::ffi::OsString;

use vddk_nbd::params::handover::Handover;
use vddk_nbd::params::{self, Secrets, VddkParams};

use super::args;

/// Marks this process non-dumpable (`PR_SET_DUMPABLE` 0) for the rest of
/// its life: once read, VDDK keeps its own copies of the credentials,
/// which no code of ours can zeroize.
pub fn no_core_dumps() -> Result<(), String> {
    nix::sys::prctl::set_dumpable(false).map_err(|e| {
        format!("cannot mark the process non-dumpable to keep the password out of core dumps: {e}")
    })
}

/// Tells the user that a secret on the command line can be seen until the
/// re-exec removes it, and how to avoid that.
pub fn warn_about_literals(p: &VddkParams) {
    for (key, given) in [("password", &p.password), ("cookie", &p.cookie)] {
        if given.as_ref().is_some_and(params::Password::is_literal) {
            log::warn!(
                "{key}= given on the command line is visible to other users of this machine \
                 (ps, /proc/PID/cmdline) until vddk-nbd re-executes itself without it; \
                 give it as {key}=+FILE, {key}=- (prompt) or {key}=-FD instead"
            );
        }
    }
}

/// The secrets written on the command line itself (the other forms are
/// left for the process that serves to read).
pub fn literals(p: &VddkParams) -> Result<Secrets, String> {
    let literal = |given: &Option<params::Password>, key| {
        given
            .as_ref()
            .filter(|g| g.is_literal())
            .map(|g| g.resolve(key))
            .transpose()
            .map_err(|e| e.to_string())
    };
    Ok(Secrets {
        password: literal(&p.password, "password")?,
        cookie: literal(&p.cookie, "cookie")?,
    })
}

/// The key of a `password=` or `cookie=` word that is not UTF-8, which
/// must be refused without repeating it (the parser's message would).
pub fn non_utf8_secret(argv: &[OsString]) -> Option<&'static str> {
    use std::os::unix::ffi::OsStrExt;
    argv.iter().find_map(|w| {
        if w.to_str().is_some() {
            return None;
        }
        let b = w.as_bytes();
        ["password", "cookie"]
            .into_iter()
            .find(|k| b.starts_with(k.as_bytes()) && b.get(k.len()) == Some(&b'='))
    })
}

/// The positions in `argv` (the arguments after the program name) of the
/// words that set `password=` or `cookie=`, with the key. A word is a
/// parameter, rather than the value of an option (`--run 'password=x'`),
/// when changing it changes the parsed parameters, so the parser decides.
fn secret_words(argv: &[OsString]) -> Vec<(usize, &'static str)> {
    let Ok(base) = args::parse(argv.iter().cloned()) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for (i, word) in argv.iter().enumerate() {
        let Some((key, value)) = word.to_str().and_then(params::as_pair) else {
            continue;
        };
        let key = match key {
            "password" => "password",
            "cookie" => "cookie",
            _ => continue,
        };
        let probe_value = if value == "-0" { "-1" } else { "-0" };
        let mut probe = argv.to_vec();
        probe[i] = OsString::from(format!("{key}={probe_value}"));
        if args::parse(probe).is_ok_and(|o| o.params != base.params) {
            found.push((i, key));
        }
    }
    found
}

/// `argv` with every `password=` and `cookie=` parameter replaced by the
/// word of the handover for its key; other words are left as they are.
fn replace_secret_words(argv: &[OsString], handovers: &[Handover]) -> Vec<OsString> {
    let mut out = argv.to_vec();
    for (i, key) in secret_words(argv) {
        if let Some(h) = handovers.iter().find(|h| h.key() == key) {
            out[i] = OsString::from(h.arg());
        }
    }
    out
}

/// The arguments for a copy of this program that reads `secrets` from
/// pipes instead of its command line, and the pipes, which must stay
/// open until the copy has started. Fails if a secret would still be
/// on the new command line.
pub fn moved_off_argv(
    argv: &[OsString],
    secrets: &Secrets,
) -> Result<(Vec<OsString>, Vec<Handover>), String> {
    let handovers = secrets
        .named()
        .map(|(key, s)| Handover::new(key, s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let out = replace_secret_words(argv, &handovers);
    let still_literal = args::parse(out.iter().cloned())
        .map_err(|e| e.to_string())
        .and_then(|o| params::vddk_plugin::parse(&o.params).map_err(|e| e.to_string()))
        .map(|p| p.has_literal_secret())
        .unwrap_or(true);
    if still_literal {
        return Err("cannot find every password= and cookie= word on the command line".into());
    }
    Ok((out, handovers))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vddk::Secret;

    fn words(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    #[test]
    fn only_parameters_are_secret_words() {
        let argv = words(&[
            "--run",
            "echo password=not-a-param",
            "-e",
            "cookie=export-name",
            "vddk",
            "password=s1",
            "server=h",
            "cookie=c1",
            "password=s2",
            "/d.vmdk",
        ]);
        assert_eq!(
            secret_words(&argv),
            vec![(5, "password"), (7, "cookie"), (8, "password")]
        );
        let argv = words(&["password=-0", "--run=password=x", "/d.vmdk"]);
        assert_eq!(secret_words(&argv), vec![(0, "password")]);
    }

    #[test]
    fn secrets_leave_the_command_line() {
        let argv = words(&[
            "-f",
            "--run",
            "echo password=x",
            "server=h",
            "user=u",
            "password=hunter2",
            "vm=moref=1",
            "cookie=sess-1",
            "[ds] a/a.vmdk",
        ]);
        let secrets = Secrets {
            password: Some(Secret::from("hunter2")),
            cookie: Some(Secret::from("sess-1")),
        };
        let (out, handovers) = moved_off_argv(&argv, &secrets).unwrap();
        assert_eq!(handovers.len(), 2);
        let joined: Vec<String> = out.iter().map(|w| w.to_string_lossy().into()).collect();
        assert!(!joined
            .iter()
            .any(|w| w.contains("hunter2") || w.contains("sess-1")));
        assert_eq!(joined[2], "echo password=x");
        assert_eq!(joined[5], handovers[0].arg());
        assert_eq!(joined[7], handovers[1].arg());
        let o = args::parse(out).unwrap();
        let p = params::vddk_plugin::parse(&o.params).unwrap();
        let s = Secrets::resolve(&p).unwrap();
        // Reading closed the pipes: their owners must not close the
        // numbers again.
        std::mem::forget(handovers);
        assert_eq!(s.password.unwrap().expose(), "hunter2");
        assert_eq!(s.cookie.unwrap().expose(), "sess-1");
    }

    #[test]
    fn a_literal_left_behind_is_an_error() {
        let argv = words(&["password=a", "/d.vmdk"]);
        // Only a cookie is handed over, so the password stays literal.
        let secrets = Secrets {
            password: None,
            cookie: Some(Secret::from("c")),
        };
        assert!(moved_off_argv(&argv, &secrets).is_err());
    }
}
