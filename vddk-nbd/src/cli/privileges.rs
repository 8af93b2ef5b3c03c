//! `-u USER` and `-g GROUP`: the identity the server takes once its
//! sockets are bound, as nbdkit's flags do, with two differences a
//! careful administrator expects:
//!
//! - `-u USER` alone also takes USER's primary group and supplementary
//!   groups (as `runuser` does), rather than keeping root's; `-g GROUP`
//!   sets the group, and with `-u` USER's other groups are kept too.
//! - The change is checked: every id (real, effective, saved) must be
//!   the new one, and going back to root must fail. Any failure stops
//!   the server before it serves anything.
//!
//! Names are looked up (numbers are taken as ids) and permission is
//! checked at start-up, before VDDK is loaded, so a typo or a missing
//! right is reported at once.

use std::ffi::CString;
use std::path::Path;

use nix::unistd::{self, Gid, Group, Uid, User};

/// The identity to take.
#[derive(Debug, Clone)]
pub struct Identity {
    uid: Option<Uid>,
    gid: Gid,
    /// The user's name, for its supplementary groups (`-u` given).
    user_name: Option<CString>,
    /// How the user asked, for messages.
    spelled: String,
}

fn lookup_user(name: &str) -> Result<User, String> {
    let found =
        User::from_name(name).map_err(|e| format!("-u {name}: cannot look the user up: {e}"))?;
    if let Some(u) = found {
        return Ok(u);
    }
    let by_id = name
        .parse::<u32>()
        .ok()
        .and_then(|n| User::from_uid(Uid::from_raw(n)).ok().flatten());
    by_id.ok_or_else(|| {
        format!("-u {name}: no such user (check the name in /etc/passwd, or give a numeric uid)")
    })
}

fn lookup_group(name: &str) -> Result<Gid, String> {
    let found =
        Group::from_name(name).map_err(|e| format!("-g {name}: cannot look the group up: {e}"))?;
    if let Some(g) = found {
        return Ok(g.gid);
    }
    match name.parse::<u32>() {
        Ok(n) => Ok(Gid::from_raw(n)),
        Err(_) => Err(format!(
            "-g {name}: no such group (check the name in /etc/group, or give a numeric gid)"
        )),
    }
}

impl Identity {
    /// The identity `-u`/`-g` ask for, or `None` without them. Fails
    /// when a name is unknown, or when this process may not take the
    /// identity (only root may change user or group).
    pub fn from_flags(user: Option<&str>, group: Option<&str>) -> Result<Option<Identity>, String> {
        let user = user.map(lookup_user).transpose()?;
        let gid = match (group, &user) {
            (Some(g), _) => lookup_group(g)?,
            (None, Some(u)) => u.gid,
            (None, None) => return Ok(None),
        };
        let spelled = match (&user, group) {
            (Some(u), Some(g)) => format!("user {} ({}), group {g} ({gid})", u.name, u.uid),
            (Some(u), None) => format!("user {} ({}), group {gid}", u.name, u.uid),
            (None, Some(g)) => format!("group {g} ({gid})"),
            (None, None) => String::new(),
        };
        let user_name = user
            .as_ref()
            .map(|u| {
                CString::new(u.name.as_str())
                    .map_err(|_| format!("-u {}: the name holds a NUL byte", u.name))
            })
            .transpose()?;
        let id = Identity {
            uid: user.map(|u| u.uid),
            gid,
            user_name,
            spelled,
        };
        id.check_permitted()?;
        Ok(Some(id))
    }

    fn is_current(&self) -> bool {
        self.uid.map_or(true, |u| u == Uid::effective()) && self.gid == Gid::effective()
    }

    fn check_permitted(&self) -> Result<(), String> {
        if Uid::effective().is_root() || self.is_current() {
            return Ok(());
        }
        Err(format!(
            "cannot become {}: only root may change user or group (running as uid {}); \
             run vddk-nbd as root, or leave out -u/-g",
            self.spelled,
            Uid::effective()
        ))
    }

    /// Makes `path` (a socket, or the private directory of `-U -`)
    /// belong to the new identity, so the server can still remove it at
    /// exit and the new user can connect.
    pub fn chown(&self, path: &Path) -> Result<(), String> {
        if !Uid::effective().is_root() {
            return Ok(());
        }
        unistd::chown(path, self.uid, Some(self.gid))
            .map_err(|e| format!("cannot give {} to {}: {e}", path.display(), self.spelled))
    }

    /// Takes the identity for good: supplementary groups, group, then
    /// user, then checks that nothing of the old identity is left.
    pub fn drop_privileges(&self) -> Result<(), String> {
        let fail = |what: &str, e: nix::Error| {
            format!(
                "cannot become {}: {what} failed: {e}; not serving",
                self.spelled
            )
        };
        if self.is_current() && !Uid::effective().is_root() {
            log::debug!("already running as {}", self.spelled);
            return Ok(());
        }
        match &self.user_name {
            Some(name) => unistd::initgroups(name, self.gid).map_err(|e| fail("initgroups", e))?,
            None => unistd::setgroups(&[self.gid]).map_err(|e| fail("setgroups", e))?,
        }
        unistd::setgid(self.gid).map_err(|e| fail("setgid", e))?;
        if let Some(uid) = self.uid {
            unistd::setuid(uid).map_err(|e| fail("setuid", e))?;
        }
        self.verify()?;
        log::debug!("now running as {}", self.spelled);
        Ok(())
    }

    fn verify(&self) -> Result<(), String> {
        let bad = |what: String| {
            format!(
                "cannot become {}: {what} after the change; not serving",
                self.spelled
            )
        };
        let g = unistd::getresgid().map_err(|e| bad(format!("getresgid failed ({e})")))?;
        if [g.real, g.effective, g.saved]
            .iter()
            .any(|x| *x != self.gid)
        {
            return Err(bad(format!(
                "the group ids are {}/{}/{}",
                g.real, g.effective, g.saved
            )));
        }
        if let Some(uid) = self.uid {
            let u = unistd::getresuid().map_err(|e| bad(format!("getresuid failed ({e})")))?;
            if [u.real, u.effective, u.saved].iter().any(|x| *x != uid) {
                return Err(bad(format!(
                    "the user ids are {}/{}/{}",
                    u.real, u.effective, u.saved
                )));
            }
            if !uid.is_root() && unistd::setuid(Uid::from_raw(0)).is_ok() {
                return Err(bad("root could be regained".into()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_names_are_refused_with_a_hint() {
        let e = Identity::from_flags(Some("no-such-user-x9"), None).unwrap_err();
        assert!(
            e.contains("no such user") && e.contains("/etc/passwd"),
            "{e}"
        );
        let e = Identity::from_flags(None, Some("no-such-group-x9")).unwrap_err();
        assert!(e.contains("no such group"), "{e}");
        assert!(Identity::from_flags(None, None).unwrap().is_none());
    }

    #[test]
    fn names_and_numbers() {
        let me = User::from_uid(Uid::effective()).unwrap().unwrap();
        let by_name = Identity::from_flags(Some(&me.name), None).unwrap().unwrap();
        let by_id = Identity::from_flags(Some(&me.uid.to_string()), None)
            .unwrap()
            .unwrap();
        assert_eq!(by_name.uid, Some(me.uid));
        assert_eq!(by_id.uid, Some(me.uid));
        assert_eq!(by_name.gid, me.gid);
        let g = Identity::from_flags(None, Some("12345")).map(|i| i.map(|i| i.gid));
        if Uid::effective().is_root() {
            assert_eq!(g.unwrap(), Some(Gid::from_raw(12345)));
        } else {
            assert!(g.unwrap_err().contains("only root"));
        }
    }
}
