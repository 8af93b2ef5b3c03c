//! Numbers from the NBD protocol specification (doc/proto.md of the NBD
//! project): magics, handshake and transmission flags, options, option
//! replies, commands, structured reply types and error numbers.

/// `NBDMAGIC`, the first eight bytes a server sends.
pub const NBD_MAGIC: u64 = 0x4e42_444d_4147_4943;
/// `IHAVEOPT`: newstyle negotiation, and the prefix of every option request.
pub const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
/// The oldstyle handshake's second magic, after `NBDMAGIC`.
pub const OLDSTYLE_MAGIC: u64 = 0x0000_4202_8186_1253;
/// Prefix of every option reply.
pub const OPTION_REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
/// Prefix of every transmission request.
pub const REQUEST_MAGIC: u32 = 0x2560_9513;
/// Prefix of a simple reply.
pub const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
/// Prefix of a structured reply chunk.
pub const STRUCTURED_REPLY_MAGIC: u32 = 0x668e_33ef;

/// Server handshake flag: fixed newstyle negotiation.
pub const FLAG_FIXED_NEWSTYLE: u16 = 1 << 0;
/// Server handshake flag: the client may ask to omit the 124 zero bytes.
pub const FLAG_NO_ZEROES: u16 = 1 << 1;
/// Client flag: fixed newstyle understood.
pub const FLAG_C_FIXED_NEWSTYLE: u32 = 1 << 0;
/// Client flag: omit the zero padding after NBD_OPT_EXPORT_NAME.
pub const FLAG_C_NO_ZEROES: u32 = 1 << 1;

/// Transmission flags (16 bits, sent with the export size).
pub mod tflag {
    /// Always set.
    pub const HAS_FLAGS: u16 = 1 << 0;
    /// The export is read-only.
    pub const READ_ONLY: u16 = 1 << 1;
    /// NBD_CMD_FLUSH is supported.
    pub const SEND_FLUSH: u16 = 1 << 2;
    /// NBD_CMD_FLAG_FUA is supported.
    pub const SEND_FUA: u16 = 1 << 3;
    /// NBD_CMD_TRIM is supported (when the export can discard).
    pub const SEND_TRIM: u16 = 1 << 5;
    /// NBD_CMD_WRITE_ZEROES is supported.
    pub const SEND_WRITE_ZEROES: u16 = 1 << 6;
    /// NBD_CMD_FLAG_DF is supported.
    pub const SEND_DF: u16 = 1 << 7;
    /// A flush on one connection covers writes from every connection.
    pub const CAN_MULTI_CONN: u16 = 1 << 8;
    /// NBD_CMD_CACHE is supported.
    pub const SEND_CACHE: u16 = 1 << 10;
    /// NBD_CMD_FLAG_FAST_ZERO is understood.
    pub const SEND_FAST_ZERO: u16 = 1 << 11;
}

/// Option numbers.
pub mod opt {
    /// Choose an export and end negotiation (old style, no reply on error).
    pub const EXPORT_NAME: u32 = 1;
    /// End negotiation without an export.
    pub const ABORT: u32 = 2;
    /// List the exports.
    pub const LIST: u32 = 3;
    /// Upgrade the connection to TLS.
    pub const STARTTLS: u32 = 5;
    /// Describe an export.
    pub const INFO: u32 = 6;
    /// Describe an export and enter transmission.
    pub const GO: u32 = 7;
    /// Enable structured replies.
    pub const STRUCTURED_REPLY: u32 = 8;
    /// List metadata contexts.
    pub const LIST_META_CONTEXT: u32 = 9;
    /// Select metadata contexts.
    pub const SET_META_CONTEXT: u32 = 10;
}

/// Option reply types.
pub mod rep {
    /// Option accepted.
    pub const ACK: u32 = 1;
    /// One export in a LIST answer.
    pub const SERVER: u32 = 2;
    /// One NBD_INFO_* item in an INFO/GO answer.
    pub const INFO: u32 = 3;
    /// One metadata context.
    pub const META_CONTEXT: u32 = 4;
    /// Unknown option.
    pub const ERR_UNSUP: u32 = (1 << 31) + 1;
    /// Forbidden by policy.
    pub const ERR_POLICY: u32 = (1 << 31) + 2;
    /// Syntactically invalid, or out of order.
    pub const ERR_INVALID: u32 = (1 << 31) + 3;
    /// The server refuses the option until the client has upgraded to TLS.
    pub const ERR_TLS_REQD: u32 = (1 << 31) + 5;
    /// No such export.
    pub const ERR_UNKNOWN: u32 = (1 << 31) + 6;
    /// The server is shutting down.
    pub const ERR_SHUTDOWN: u32 = (1 << 31) + 7;
    /// Option payload too large.
    pub const ERR_TOO_BIG: u32 = (1 << 31) + 9;
}

/// NBD_INFO_* item types inside NBD_REP_INFO.
pub mod info {
    /// Size and transmission flags (always sent).
    pub const EXPORT: u16 = 0;
    /// Canonical export name.
    pub const NAME: u16 = 1;
    /// Human-readable description.
    pub const DESCRIPTION: u16 = 2;
    /// Minimum, preferred and maximum block sizes.
    pub const BLOCK_SIZE: u16 = 3;
}

/// Transmission commands.
pub mod cmd {
    /// Read.
    pub const READ: u16 = 0;
    /// Write.
    pub const WRITE: u16 = 1;
    /// Disconnect.
    pub const DISC: u16 = 2;
    /// Flush.
    pub const FLUSH: u16 = 3;
    /// Trim (not advertised).
    pub const TRIM: u16 = 4;
    /// Prefetch.
    pub const CACHE: u16 = 5;
    /// Write zeroes.
    pub const WRITE_ZEROES: u16 = 6;
    /// Block status.
    pub const BLOCK_STATUS: u16 = 7;
}

/// Command flags.
pub mod cflag {
    /// Force unit access.
    pub const FUA: u16 = 1 << 0;
    /// Write zeroes without punching a hole.
    pub const NO_HOLE: u16 = 1 << 1;
    /// Do not fragment a structured read.
    pub const DF: u16 = 1 << 2;
    /// Block status: one extent is enough.
    pub const REQ_ONE: u16 = 1 << 3;
    /// Write zeroes only if fast.
    pub const FAST_ZERO: u16 = 1 << 4;
}

/// Structured reply flag: last chunk of a reply.
pub const REPLY_FLAG_DONE: u16 = 1 << 0;

/// Structured reply chunk types.
pub mod chunk {
    /// Empty final chunk.
    pub const NONE: u16 = 0;
    /// Data at an offset.
    pub const OFFSET_DATA: u16 = 1;
    /// A run of zeroes at an offset.
    pub const OFFSET_HOLE: u16 = 2;
    /// Block status descriptors for one metadata context.
    pub const BLOCK_STATUS: u16 = 5;
    /// An error with a message.
    pub const ERROR: u16 = (1 << 15) + 1;
}

/// `base:allocation` status flags.
pub const STATE_HOLE: u32 = 1 << 0;
/// Reads as zeroes.
pub const STATE_ZERO: u32 = 1 << 1;

/// The metadata context this server knows.
pub const BASE_ALLOCATION: &str = "base:allocation";
/// The id given to `base:allocation` by NBD_OPT_SET_META_CONTEXT.
pub const BASE_ALLOCATION_ID: u32 = 1;

/// Error numbers on the wire (fixed by the protocol, not the host's errno).
pub mod errno {
    /// Operation not permitted (write to a read-only export).
    pub const EPERM: u32 = 1;
    /// Input/output error.
    pub const EIO: u32 = 5;
    /// Out of memory.
    pub const ENOMEM: u32 = 12;
    /// Invalid argument.
    pub const EINVAL: u32 = 22;
    /// No space (write beyond the end).
    pub const ENOSPC: u32 = 28;
    /// Request too large.
    pub const EOVERFLOW: u32 = 75;
    /// Not supported (fast zero).
    pub const ENOTSUP: u32 = 95;
    /// Server shutting down.
    pub const ESHUTDOWN: u32 = 108;
}

/// Size of a transmission request header.
pub const REQUEST_LEN: usize = 28;
/// Size of an option request header.
pub const OPTION_HEADER_LEN: usize = 16;
/// Largest option payload accepted; longer options are answered
/// NBD_REP_ERR_TOO_BIG and the connection is closed, so a lying length
/// never makes the server allocate.
pub const MAX_OPTION_LEN: u32 = 64 * 1024;
/// Longest string (export name, query) the spec allows.
pub const MAX_STRING_LEN: usize = 4096;
