//! What negotiation says about an export: its name, size, block sizes and
//! the features its transmission flags advertise.

use super::consts::tflag;

/// One export as negotiation presents it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportDesc {
    /// Name shown by NBD_OPT_LIST and NBD_INFO_NAME. Used on its own as the
    /// handshake's [`Exports`], every name a client asks for is accepted and
    /// served as this export, as nbdkit does.
    pub name: String,
    /// Optional NBD_INFO_DESCRIPTION.
    pub description: Option<String>,
    /// Size in bytes.
    pub size: u64,
    /// Minimum, preferred and maximum block sizes for NBD_INFO_BLOCK_SIZE.
    pub block_sizes: (u32, u32, u32),
    /// What the export can do.
    pub features: Features,
}

/// What an export can do, as its transmission flags advertise it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Features {
    /// Writes are refused.
    pub read_only: bool,
    /// NBD_CMD_FLUSH.
    pub flush: bool,
    /// NBD_CMD_FLAG_FUA on writes.
    pub fua: bool,
    /// NBD_CMD_WRITE_ZEROES.
    pub zero: bool,
    /// NBD_CMD_FLAG_FAST_ZERO (answered at once when zeroing is not fast).
    pub fast_zero: bool,
    /// NBD_CMD_TRIM.
    pub trim: bool,
    /// NBD_CMD_CACHE.
    pub cache: bool,
    /// A flush on one connection covers writes made on every connection.
    pub multi_conn: bool,
}

impl Features {
    /// A writable export with flush, FUA, zeroing and cache; no trim.
    pub const WRITABLE: Features = Features {
        read_only: false,
        flush: true,
        fua: true,
        zero: true,
        fast_zero: true,
        trim: false,
        cache: true,
        multi_conn: true,
    };

    /// The same export with writes refused (and nothing that writes).
    pub fn read_only(self) -> Features {
        Features {
            read_only: true,
            fua: false,
            zero: false,
            fast_zero: false,
            trim: false,
            ..self
        }
    }
}

impl ExportDesc {
    /// Transmission flags for a connection, given whether it negotiated
    /// structured replies (DF only makes sense with them).
    pub fn transmission_flags(&self, structured: bool) -> u16 {
        let f = self.features;
        let mut flags = tflag::HAS_FLAGS;
        for (on, flag) in [
            (f.read_only, tflag::READ_ONLY),
            (f.flush, tflag::SEND_FLUSH),
            (f.fua, tflag::SEND_FUA),
            (f.zero, tflag::SEND_WRITE_ZEROES),
            (f.zero && f.fast_zero, tflag::SEND_FAST_ZERO),
            (f.trim, tflag::SEND_TRIM),
            (f.cache, tflag::SEND_CACHE),
            (f.multi_conn, tflag::CAN_MULTI_CONN),
            (structured, tflag::SEND_DF),
        ] {
            if on {
                flags |= flag;
            }
        }
        flags
    }
}

/// Why a name selects no export, in words a client can show its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoSuchExport(pub String);

impl std::fmt::Display for NoSuchExport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NoSuchExport {}

/// Where negotiation finds exports: the list for NBD_OPT_LIST and the
/// export a client's name selects. A lookup may open the export, so it is
/// asked only when a client needs the answer (INFO, GO, EXPORT_NAME).
pub trait Exports: Send {
    /// Names and descriptions for NBD_OPT_LIST, the default export first.
    fn list(&self) -> Vec<(String, Option<String>)>;
    /// The export `name` selects (`""` is the default export), or why there
    /// is none, in words a client can show its user.
    fn lookup(&mut self, name: &str) -> Result<ExportDesc, NoSuchExport>;
}

/// A single export that answers to every name.
impl Exports for ExportDesc {
    fn list(&self) -> Vec<(String, Option<String>)> {
        vec![(self.name.clone(), self.description.clone())]
    }

    fn lookup(&mut self, _name: &str) -> Result<ExportDesc, NoSuchExport> {
        Ok(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(features: Features) -> ExportDesc {
        ExportDesc {
            name: String::new(),
            description: None,
            size: 1 << 20,
            block_sizes: (1, 4096, 1 << 20),
            features,
        }
    }

    #[test]
    fn flags_follow_the_features() {
        let all = tflag::HAS_FLAGS
            | tflag::SEND_FLUSH
            | tflag::SEND_FUA
            | tflag::SEND_WRITE_ZEROES
            | tflag::SEND_FAST_ZERO
            | tflag::SEND_CACHE
            | tflag::CAN_MULTI_CONN;
        assert_eq!(desc(Features::WRITABLE).transmission_flags(false), all);
        assert_eq!(
            desc(Features::WRITABLE).transmission_flags(true),
            all | tflag::SEND_DF
        );
        let ro = desc(Features::WRITABLE.read_only()).transmission_flags(false);
        assert_eq!(
            ro,
            tflag::HAS_FLAGS
                | tflag::READ_ONLY
                | tflag::SEND_FLUSH
                | tflag::SEND_CACHE
                | tflag::CAN_MULTI_CONN
        );
        let trim = Features {
            trim: true,
            multi_conn: false,
            ..Features::WRITABLE
        };
        let f = desc(trim).transmission_flags(false);
        assert_eq!(f & tflag::SEND_TRIM, tflag::SEND_TRIM);
        assert_eq!(f & tflag::CAN_MULTI_CONN, 0);
    }
}
