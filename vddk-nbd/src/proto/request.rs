//! Validation of transmission requests: a request is checked completely
//! here, so execution never re-checks.

use super::consts::{cflag, cmd};
use super::errno::Failure;
use super::export::Features;
use super::wire::Request;

/// What the connection negotiated and the export offers, fixed for the
/// life of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Export size in bytes.
    pub size: u64,
    /// What the export can do.
    pub features: Features,
    /// Largest READ/WRITE payload accepted.
    pub max_payload: u32,
    /// Structured replies negotiated.
    pub structured: bool,
    /// Id of `base:allocation` if the client selected it.
    pub base_allocation: Option<u32>,
}

/// A request that passed validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Read `length` bytes at `offset`; `df` asks for a single data chunk.
    Read { offset: u64, length: u32, df: bool },
    /// Write the payload at `offset`.
    Write { offset: u64, length: u32, fua: bool },
    /// Write zeroes; `fast` only if that is faster than writing, and
    /// `may_trim` unless the client asked for allocated zeroes (NO_HOLE).
    WriteZeroes {
        offset: u64,
        length: u32,
        fua: bool,
        fast: bool,
        may_trim: bool,
    },
    /// Discard: the range need not hold its data any more.
    Trim { offset: u64, length: u32, fua: bool },
    /// Flush everything written so far.
    Flush,
    /// Prefetch hint.
    Cache,
    /// Allocation status; `context` is the selected context id.
    BlockStatus {
        offset: u64,
        length: u32,
        req_one: bool,
        context: u32,
    },
    /// Disconnect after in-flight requests complete.
    Disconnect,
}

/// A refused request: the failure and a message for the client.
pub type Refusal = (Failure, String);

fn allowed_flags(command: u16, structured: bool) -> u16 {
    // FUA is accepted on every command, as the spec requires once SEND_FUA
    // is advertised; it only matters where data is written.
    match command {
        cmd::READ if structured => cflag::FUA | cflag::DF,
        cmd::WRITE_ZEROES => cflag::FUA | cflag::NO_HOLE | cflag::FAST_ZERO,
        cmd::BLOCK_STATUS => cflag::FUA | cflag::REQ_ONE,
        _ => cflag::FUA,
    }
}

fn check_range(r: &Request, limits: &Limits, past_end: Failure) -> Result<(), Refusal> {
    if r.length == 0 {
        return Err((Failure::Invalid, "zero-length request".into()));
    }
    match r.offset.checked_add(u64::from(r.length)) {
        Some(end) if end <= limits.size => Ok(()),
        _ => Err((
            past_end,
            format!(
                "request at offset {} length {} goes past the end of the export ({} bytes)",
                r.offset, r.length, limits.size
            ),
        )),
    }
}

/// Checks a request against the negotiated limits.
pub fn validate(r: &Request, limits: &Limits) -> Result<Command, Refusal> {
    let f = &limits.features;
    let writes = matches!(r.command, cmd::WRITE | cmd::WRITE_ZEROES | cmd::TRIM);
    if writes && f.read_only {
        return Err((Failure::ReadOnly, "the export is read-only".into()));
    }
    let known = match r.command {
        cmd::READ | cmd::WRITE | cmd::DISC | cmd::BLOCK_STATUS => true,
        cmd::FLUSH => f.flush,
        cmd::CACHE => f.cache,
        cmd::WRITE_ZEROES => f.zero,
        cmd::TRIM => f.trim,
        _ => false,
    };
    if !known {
        return Err((
            Failure::Invalid,
            format!("command {} is not supported", r.command),
        ));
    }
    let extra = r.flags & !allowed_flags(r.command, limits.structured);
    if extra != 0 {
        return Err((
            Failure::Invalid,
            format!("flags {extra:#x} are not valid for command {}", r.command),
        ));
    }
    let fua = r.flags & cflag::FUA != 0;
    match r.command {
        cmd::READ | cmd::WRITE => {
            let write = r.command == cmd::WRITE;
            check_range(
                r,
                limits,
                if write {
                    Failure::NoSpace
                } else {
                    Failure::Invalid
                },
            )?;
            if r.length > limits.max_payload {
                return Err((
                    Failure::TooBig,
                    format!(
                        "length {} exceeds the maximum payload {}",
                        r.length, limits.max_payload
                    ),
                ));
            }
            Ok(if write {
                Command::Write {
                    offset: r.offset,
                    length: r.length,
                    fua,
                }
            } else {
                Command::Read {
                    offset: r.offset,
                    length: r.length,
                    df: r.flags & cflag::DF != 0,
                }
            })
        }
        cmd::WRITE_ZEROES => {
            check_range(r, limits, Failure::NoSpace)?;
            let fast = r.flags & cflag::FAST_ZERO != 0;
            if fast && !f.fast_zero {
                return Err((
                    Failure::NotSupported,
                    "zeroing is not faster than writing on this export".into(),
                ));
            }
            Ok(Command::WriteZeroes {
                offset: r.offset,
                length: r.length,
                fua,
                fast,
                may_trim: r.flags & cflag::NO_HOLE == 0,
            })
        }
        cmd::TRIM => {
            check_range(r, limits, Failure::NoSpace)?;
            Ok(Command::Trim {
                offset: r.offset,
                length: r.length,
                fua,
            })
        }
        cmd::CACHE => {
            check_range(r, limits, Failure::Invalid)?;
            Ok(Command::Cache)
        }
        cmd::BLOCK_STATUS => {
            let Some(context) = limits.base_allocation else {
                return Err((
                    Failure::Invalid,
                    "block status needs a metadata context: negotiate base:allocation first".into(),
                ));
            };
            check_range(r, limits, Failure::Invalid)?;
            Ok(Command::BlockStatus {
                offset: r.offset,
                length: r.length,
                req_one: r.flags & cflag::REQ_ONE != 0,
                context,
            })
        }
        cmd::FLUSH => Ok(Command::Flush),
        _ => Ok(Command::Disconnect),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        size: 1 << 20,
        features: Features::WRITABLE,
        max_payload: 65536,
        structured: true,
        base_allocation: Some(1),
    };

    fn req(command: u16, flags: u16, offset: u64, length: u32) -> Request {
        Request {
            flags,
            command,
            cookie: 1,
            offset,
            length,
        }
    }

    fn failure(r: Request, l: &Limits) -> Failure {
        validate(&r, l).unwrap_err().0
    }

    #[test]
    fn accepts_good_requests() {
        assert_eq!(
            validate(&req(cmd::READ, cflag::DF, 0, 512), &LIMITS),
            Ok(Command::Read {
                offset: 0,
                length: 512,
                df: true
            })
        );
        assert_eq!(
            validate(&req(cmd::WRITE, cflag::FUA, (1 << 20) - 1, 1), &LIMITS),
            Ok(Command::Write {
                offset: (1 << 20) - 1,
                length: 1,
                fua: true
            })
        );
        assert_eq!(
            validate(&req(cmd::BLOCK_STATUS, cflag::REQ_ONE, 0, 1 << 20), &LIMITS),
            Ok(Command::BlockStatus {
                offset: 0,
                length: 1 << 20,
                req_one: true,
                context: 1
            })
        );
        assert_eq!(
            validate(&req(cmd::DISC, 0, 0, 0), &LIMITS),
            Ok(Command::Disconnect)
        );
    }

    #[test]
    fn bounds_overflow_and_sizes() {
        assert_eq!(
            failure(req(cmd::READ, 0, 1 << 20, 1), &LIMITS),
            Failure::Invalid
        );
        assert_eq!(
            failure(req(cmd::WRITE, 0, 1 << 20, 1), &LIMITS),
            Failure::NoSpace
        );
        assert_eq!(
            failure(req(cmd::WRITE_ZEROES, 0, u64::MAX, 512), &LIMITS),
            Failure::NoSpace
        );
        assert_eq!(
            failure(req(cmd::READ, 0, u64::MAX - 10, 512), &LIMITS),
            Failure::Invalid
        );
        assert_eq!(failure(req(cmd::READ, 0, 0, 0), &LIMITS), Failure::Invalid);
        assert_eq!(
            failure(req(cmd::READ, 0, 0, 65537), &LIMITS),
            Failure::TooBig
        );
        assert_eq!(
            failure(req(cmd::CACHE, 0, 1 << 19, 1 << 20), &LIMITS),
            Failure::Invalid
        );
        // Zeroes and block status are not payloads: no max-payload limit.
        assert!(validate(&req(cmd::WRITE_ZEROES, 0, 0, 1 << 20), &LIMITS).is_ok());
    }

    #[test]
    fn flags_commands_and_negotiation() {
        assert_eq!(
            failure(req(cmd::READ, cflag::REQ_ONE, 0, 512), &LIMITS),
            Failure::Invalid
        );
        let simple = Limits {
            structured: false,
            base_allocation: None,
            ..LIMITS
        };
        assert_eq!(
            failure(req(cmd::READ, cflag::DF, 0, 512), &simple),
            Failure::Invalid
        );
        assert_eq!(
            failure(req(cmd::BLOCK_STATUS, 0, 0, 512), &simple),
            Failure::Invalid
        );
        assert_eq!(
            failure(req(cmd::TRIM, 0, 0, 512), &LIMITS),
            Failure::Invalid
        );
        assert_eq!(failure(req(99, 0, 0, 512), &LIMITS), Failure::Invalid);
        let slow = Limits {
            features: Features {
                fast_zero: false,
                ..Features::WRITABLE
            },
            ..LIMITS
        };
        assert_eq!(
            failure(req(cmd::WRITE_ZEROES, cflag::FAST_ZERO, 0, 512), &slow),
            Failure::NotSupported
        );
        assert_eq!(
            validate(
                &req(cmd::WRITE_ZEROES, cflag::FAST_ZERO | cflag::NO_HOLE, 0, 512),
                &LIMITS
            ),
            Ok(Command::WriteZeroes {
                offset: 0,
                length: 512,
                fua: false,
                fast: true,
                may_trim: false
            })
        );
        let trims = Limits {
            features: Features {
                trim: true,
                ..Features::WRITABLE
            },
            ..LIMITS
        };
        assert_eq!(
            validate(&req(cmd::TRIM, cflag::FUA, 512, 512), &trims),
            Ok(Command::Trim {
                offset: 512,
                length: 512,
                fua: true
            })
        );
        let bare = Limits {
            features: Features {
                flush: false,
                cache: false,
                zero: false,
                ..Features::WRITABLE
            },
            ..LIMITS
        };
        for c in [cmd::FLUSH, cmd::CACHE, cmd::WRITE_ZEROES] {
            assert_eq!(failure(req(c, 0, 0, 512), &bare), Failure::Invalid, "{c}");
        }
    }

    #[test]
    fn read_only_refuses_writes_first() {
        let ro = Limits {
            features: Features::WRITABLE.read_only(),
            ..LIMITS
        };
        assert_eq!(failure(req(cmd::WRITE, 0, 0, 512), &ro), Failure::ReadOnly);
        assert_eq!(
            failure(req(cmd::WRITE_ZEROES, 0, 1 << 30, 512), &ro),
            Failure::ReadOnly
        );
        assert!(validate(&req(cmd::READ, 0, 0, 512), &ro).is_ok());
    }
}
