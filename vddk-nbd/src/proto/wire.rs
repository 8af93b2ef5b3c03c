//! Encoding and decoding of NBD messages, without I/O.
//!
//! Decoders take the bytes received so far and either return a value with
//! the number of bytes it used, or say how many bytes are needed, or say
//! the message is malformed. Nothing here allocates more than a size the
//! caller has already capped.

use super::consts::*;

/// Why a message could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    /// The message is incomplete: at least this many bytes (in total) are needed.
    NeedMore(usize),
    /// The bytes do not form a valid message.
    Malformed(String),
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

fn need(buf: &[u8], n: usize) -> Result<(), WireError> {
    if buf.len() < n {
        Err(WireError::NeedMore(n))
    } else {
        Ok(())
    }
}

/// The server's opening: NBDMAGIC, IHAVEOPT and the handshake flags.
pub fn encode_greeting(out: &mut Vec<u8>, flags: u16) {
    out.extend_from_slice(&NBD_MAGIC.to_be_bytes());
    out.extend_from_slice(&IHAVEOPT.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
}

/// The whole oldstyle handshake: magics, export size and flags, then 124
/// zero bytes; transmission follows at once (no options, one export).
pub fn encode_oldstyle(out: &mut Vec<u8>, size: u64, transmission_flags: u16) {
    out.extend_from_slice(&NBD_MAGIC.to_be_bytes());
    out.extend_from_slice(&OLDSTYLE_MAGIC.to_be_bytes());
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(&u32::from(transmission_flags).to_be_bytes());
    out.extend_from_slice(&[0u8; 124]);
}

/// The client's 32-bit flags after the greeting.
pub fn decode_client_flags(buf: &[u8]) -> Result<u32, WireError> {
    need(buf, 4)?;
    Ok(u32_at(buf, 0))
}

/// Header of an option request; the payload of `length` bytes follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionHeader {
    /// The option number (`opt::*`).
    pub option: u32,
    /// Payload length as claimed by the client (not yet checked).
    pub length: u32,
}

/// Decodes the 16-byte option header.
pub fn decode_option_header(buf: &[u8]) -> Result<OptionHeader, WireError> {
    need(buf, OPTION_HEADER_LEN)?;
    let magic = u64_at(buf, 0);
    if magic != IHAVEOPT {
        return Err(WireError::Malformed(format!(
            "option request magic {magic:#018x}, expected IHAVEOPT"
        )));
    }
    Ok(OptionHeader {
        option: u32_at(buf, 8),
        length: u32_at(buf, 12),
    })
}

/// Encodes one option reply.
pub fn encode_option_reply(out: &mut Vec<u8>, option: u32, reply: u32, payload: &[u8]) {
    out.extend_from_slice(&OPTION_REPLY_MAGIC.to_be_bytes());
    out.extend_from_slice(&option.to_be_bytes());
    out.extend_from_slice(&reply.to_be_bytes());
    // Payloads are built by this module from capped inputs, far below 4 GiB.
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
}

/// Payload of NBD_REP_INFO / NBD_INFO_EXPORT.
pub fn info_export(size: u64, tflags: u16) -> Vec<u8> {
    let mut p = Vec::with_capacity(12);
    p.extend_from_slice(&info::EXPORT.to_be_bytes());
    p.extend_from_slice(&size.to_be_bytes());
    p.extend_from_slice(&tflags.to_be_bytes());
    p
}

/// Payload of NBD_REP_INFO carrying a string (NAME or DESCRIPTION).
pub fn info_string(kind: u16, s: &str) -> Vec<u8> {
    let mut p = Vec::with_capacity(2 + s.len());
    p.extend_from_slice(&kind.to_be_bytes());
    p.extend_from_slice(s.as_bytes());
    p
}

/// Payload of NBD_REP_INFO / NBD_INFO_BLOCK_SIZE.
pub fn info_block_size(min: u32, preferred: u32, max: u32) -> Vec<u8> {
    let mut p = Vec::with_capacity(14);
    p.extend_from_slice(&info::BLOCK_SIZE.to_be_bytes());
    p.extend_from_slice(&min.to_be_bytes());
    p.extend_from_slice(&preferred.to_be_bytes());
    p.extend_from_slice(&max.to_be_bytes());
    p
}

/// Payload of NBD_REP_SERVER for NBD_OPT_LIST.
pub fn rep_server(name: &str) -> Vec<u8> {
    let mut p = Vec::with_capacity(4 + name.len());
    p.extend_from_slice(&(name.len() as u32).to_be_bytes());
    p.extend_from_slice(name.as_bytes());
    p
}

/// Payload of NBD_REP_META_CONTEXT.
pub fn rep_meta_context(id: u32, name: &str) -> Vec<u8> {
    let mut p = Vec::with_capacity(4 + name.len());
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(name.as_bytes());
    p
}

/// A cursor over an option payload whose total length is already known.
struct Fields<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], WireError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.buf.len());
        match end {
            Some(end) => {
                let s = &self.buf[self.at..end];
                self.at = end;
                Ok(s)
            }
            None => Err(WireError::Malformed(format!(
                "{what} runs past the end of the option payload"
            ))),
        }
    }
    fn u16(&mut self, what: &str) -> Result<u16, WireError> {
        self.take(2, what).map(|b| u16_at(b, 0))
    }
    fn u32(&mut self, what: &str) -> Result<u32, WireError> {
        self.take(4, what).map(|b| u32_at(b, 0))
    }
    fn string(&mut self, what: &str) -> Result<String, WireError> {
        let len = self.u32(what)? as usize;
        if len > MAX_STRING_LEN {
            return Err(WireError::Malformed(format!(
                "{what} is {len} bytes, the limit is {MAX_STRING_LEN}"
            )));
        }
        let b = self.take(len, what)?;
        String::from_utf8(b.to_vec())
            .map_err(|_| WireError::Malformed(format!("{what} is not UTF-8")))
    }
    fn finish(&self) -> Result<(), WireError> {
        if self.at == self.buf.len() {
            Ok(())
        } else {
            Err(WireError::Malformed(format!(
                "{} trailing bytes in the option payload",
                self.buf.len() - self.at
            )))
        }
    }
}

/// The payload of NBD_OPT_INFO and NBD_OPT_GO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InfoRequest {
    /// Export name asked for.
    pub name: String,
    /// NBD_INFO_* items the client asked for.
    pub requests: Vec<u16>,
}

/// Decodes the payload of NBD_OPT_INFO / NBD_OPT_GO (whole payload given).
pub fn decode_info_request(payload: &[u8]) -> Result<InfoRequest, WireError> {
    let mut f = Fields {
        buf: payload,
        at: 0,
    };
    let name = f.string("export name")?;
    let n = f.u16("number of information requests")?;
    let mut requests = Vec::with_capacity(usize::from(n).min(payload.len() / 2));
    for _ in 0..n {
        requests.push(f.u16("information request")?);
    }
    f.finish()?;
    Ok(InfoRequest { name, requests })
}

/// The payload of NBD_OPT_LIST_META_CONTEXT and NBD_OPT_SET_META_CONTEXT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaRequest {
    /// Export name the contexts are for.
    pub name: String,
    /// Queries, each a namespace or a full context name.
    pub queries: Vec<String>,
}

/// Decodes a meta context option payload (whole payload given).
pub fn decode_meta_request(payload: &[u8]) -> Result<MetaRequest, WireError> {
    let mut f = Fields {
        buf: payload,
        at: 0,
    };
    let name = f.string("export name")?;
    let n = f.u32("number of queries")?;
    // Each query takes at least 4 bytes, which bounds a lying count.
    if n as usize > payload.len() / 4 {
        return Err(WireError::Malformed(format!(
            "{n} queries cannot fit in {} bytes",
            payload.len()
        )));
    }
    let mut queries = Vec::with_capacity(n as usize);
    for _ in 0..n {
        queries.push(f.string("query")?);
    }
    f.finish()?;
    Ok(MetaRequest { name, queries })
}

/// A transmission request header (the write payload, if any, follows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// Command flags (`cflag::*`).
    pub flags: u16,
    /// Command (`cmd::*`).
    pub command: u16,
    /// Opaque value echoed in the reply.
    pub cookie: u64,
    /// Byte offset.
    pub offset: u64,
    /// Byte length.
    pub length: u32,
}

/// Decodes a 28-byte request header.
pub fn decode_request(buf: &[u8]) -> Result<Request, WireError> {
    need(buf, REQUEST_LEN)?;
    let magic = u32_at(buf, 0);
    if magic != REQUEST_MAGIC {
        return Err(WireError::Malformed(format!(
            "request magic {magic:#010x}, expected {REQUEST_MAGIC:#010x}"
        )));
    }
    Ok(Request {
        flags: u16_at(buf, 4),
        command: u16_at(buf, 6),
        cookie: u64_at(buf, 8),
        offset: u64_at(buf, 16),
        length: u32_at(buf, 24),
    })
}

/// Encodes a request header (used by tests and by clients).
pub fn encode_request(out: &mut Vec<u8>, r: &Request) {
    out.extend_from_slice(&REQUEST_MAGIC.to_be_bytes());
    out.extend_from_slice(&r.flags.to_be_bytes());
    out.extend_from_slice(&r.command.to_be_bytes());
    out.extend_from_slice(&r.cookie.to_be_bytes());
    out.extend_from_slice(&r.offset.to_be_bytes());
    out.extend_from_slice(&r.length.to_be_bytes());
}

/// Somewhere encoded bytes go: a `Vec`, or a reply's fixed-size header.
pub trait Put {
    /// Appends `bytes`.
    fn put(&mut self, bytes: &[u8]);
}

impl Put for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Encodes a simple reply header; read data, if any, follows it.
pub fn encode_simple_reply(out: &mut impl Put, error: u32, cookie: u64) {
    out.put(&SIMPLE_REPLY_MAGIC.to_be_bytes());
    out.put(&error.to_be_bytes());
    out.put(&cookie.to_be_bytes());
}

/// Encodes a structured reply chunk header; `length` payload bytes follow.
pub fn encode_chunk_header(out: &mut impl Put, flags: u16, kind: u16, cookie: u64, length: u32) {
    out.put(&STRUCTURED_REPLY_MAGIC.to_be_bytes());
    out.put(&flags.to_be_bytes());
    out.put(&kind.to_be_bytes());
    out.put(&cookie.to_be_bytes());
    out.put(&length.to_be_bytes());
}

/// Header and offset of an OFFSET_DATA chunk; `data_len` bytes of data follow.
pub fn encode_data_chunk_header(
    out: &mut impl Put,
    flags: u16,
    cookie: u64,
    offset: u64,
    data_len: u32,
) {
    encode_chunk_header(
        out,
        flags,
        chunk::OFFSET_DATA,
        cookie,
        data_len.saturating_add(8),
    );
    out.put(&offset.to_be_bytes());
}

/// A complete OFFSET_HOLE chunk.
pub fn encode_hole_chunk(out: &mut impl Put, flags: u16, cookie: u64, offset: u64, length: u32) {
    encode_chunk_header(out, flags, chunk::OFFSET_HOLE, cookie, 12);
    out.put(&offset.to_be_bytes());
    out.put(&length.to_be_bytes());
}

/// A complete final ERROR chunk with a message (cut to the spec's 4096 bytes).
pub fn encode_error_chunk(out: &mut impl Put, cookie: u64, error: u32, message: &str) {
    let mut end = message.len().min(MAX_STRING_LEN);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    let msg = &message.as_bytes()[..end];
    encode_chunk_header(
        out,
        REPLY_FLAG_DONE,
        chunk::ERROR,
        cookie,
        6 + msg.len() as u32,
    );
    out.put(&error.to_be_bytes());
    out.put(&(msg.len() as u16).to_be_bytes());
    out.put(msg);
}

/// A complete final BLOCK_STATUS chunk: (length, flags) descriptors.
pub fn encode_block_status_chunk(
    out: &mut impl Put,
    cookie: u64,
    context: u32,
    descriptors: &[(u32, u32)],
) {
    let len = 4 + 8 * descriptors.len() as u32;
    encode_chunk_header(out, REPLY_FLAG_DONE, chunk::BLOCK_STATUS, cookie, len);
    out.put(&context.to_be_bytes());
    for &(length, flags) in descriptors {
        out.put(&length.to_be_bytes());
        out.put(&flags.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trip_and_truncation() {
        let r = Request {
            flags: cflag::FUA,
            command: cmd::WRITE,
            cookie: 0xdead_beef_0102_0304,
            offset: 1 << 40,
            length: 4096,
        };
        let mut b = Vec::new();
        encode_request(&mut b, &r);
        assert_eq!(b.len(), REQUEST_LEN);
        assert_eq!(decode_request(&b), Ok(r));
        assert_eq!(decode_request(&b[..27]), Err(WireError::NeedMore(28)));
        b[0] ^= 1;
        assert!(matches!(decode_request(&b), Err(WireError::Malformed(_))));
    }

    #[test]
    fn option_header_magic_and_length() {
        let mut b = IHAVEOPT.to_be_bytes().to_vec();
        b.extend_from_slice(&opt::GO.to_be_bytes());
        b.extend_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(
            decode_option_header(&b),
            Ok(OptionHeader {
                option: opt::GO,
                length: u32::MAX
            })
        );
        assert_eq!(decode_option_header(&b[..15]), Err(WireError::NeedMore(16)));
        b[1] = 0;
        assert!(matches!(
            decode_option_header(&b),
            Err(WireError::Malformed(_))
        ));
    }

    fn info_payload(name: &str, reqs: &[u16]) -> Vec<u8> {
        let mut p = (name.len() as u32).to_be_bytes().to_vec();
        p.extend_from_slice(name.as_bytes());
        p.extend_from_slice(&(reqs.len() as u16).to_be_bytes());
        for r in reqs {
            p.extend_from_slice(&r.to_be_bytes());
        }
        p
    }

    #[test]
    fn info_request_decodes_and_rejects_lies() {
        let p = info_payload("disk", &[info::NAME, info::BLOCK_SIZE]);
        assert_eq!(
            decode_info_request(&p),
            Ok(InfoRequest {
                name: "disk".into(),
                requests: vec![info::NAME, info::BLOCK_SIZE]
            })
        );
        // Name length claims more than the payload holds.
        let mut lie = p.clone();
        lie[3] = 200;
        assert!(matches!(
            decode_info_request(&lie),
            Err(WireError::Malformed(_))
        ));
        // A 4 GiB name length is refused without allocating.
        let mut huge = p.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            decode_info_request(&huge),
            Err(WireError::Malformed(_))
        ));
        // Request count larger than the remaining bytes.
        let mut count = p.clone();
        count[8..10].copy_from_slice(&1000u16.to_be_bytes());
        assert!(matches!(
            decode_info_request(&count),
            Err(WireError::Malformed(_))
        ));
        // Trailing garbage.
        let mut trailing = p;
        trailing.push(0);
        assert!(matches!(
            decode_info_request(&trailing),
            Err(WireError::Malformed(_))
        ));
    }

    #[test]
    fn meta_request_decodes_and_bounds_count() {
        let mut p = 0u32.to_be_bytes().to_vec();
        p.extend_from_slice(&2u32.to_be_bytes());
        for q in ["base:", "base:allocation"] {
            p.extend_from_slice(&(q.len() as u32).to_be_bytes());
            p.extend_from_slice(q.as_bytes());
        }
        assert_eq!(
            decode_meta_request(&p),
            Ok(MetaRequest {
                name: String::new(),
                queries: vec!["base:".into(), "base:allocation".into()]
            })
        );
        let mut lie = p.clone();
        lie[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            decode_meta_request(&lie),
            Err(WireError::Malformed(_))
        ));
        assert!(matches!(
            decode_meta_request(&p[..p.len() - 1]),
            Err(WireError::Malformed(_))
        ));
    }

    #[test]
    fn replies_have_exact_layout() {
        let mut b = Vec::new();
        encode_simple_reply(&mut b, errno::EIO, 7);
        assert_eq!(
            b,
            [0x67, 0x44, 0x66, 0x98, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 7]
        );

        let mut b = Vec::new();
        encode_error_chunk(&mut b, 9, errno::EPERM, "no");
        assert_eq!(
            b,
            [
                0x66, 0x8e, 0x33, 0xef, 0, 1, 0x80, 1, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 8, 0, 0, 0,
                1, 0, 2, b'n', b'o'
            ]
        );

        let mut b = Vec::new();
        encode_block_status_chunk(
            &mut b,
            1,
            BASE_ALLOCATION_ID,
            &[(512, STATE_HOLE | STATE_ZERO)],
        );
        assert_eq!(&b[4..8], &[0, 1, 0, 5]);
        assert_eq!(&b[16..20], &12u32.to_be_bytes());
        assert_eq!(&b[20..], &[0, 0, 0, 1, 0, 0, 2, 0, 0, 0, 0, 3]);

        let mut b = Vec::new();
        encode_hole_chunk(&mut b, 0, 1, 4096, 512);
        assert_eq!(b.len(), 20 + 12);
        assert_eq!(&b[6..8], &[0, 2]);

        let mut b = Vec::new();
        encode_option_reply(&mut b, opt::LIST, rep::SERVER, &rep_server("a"));
        assert_eq!(&b[..8], &OPTION_REPLY_MAGIC.to_be_bytes());
        assert_eq!(&b[8..20], &[0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 5]);
        assert_eq!(&b[20..], &[0, 0, 0, 1, b'a']);
    }

    #[test]
    fn error_message_is_capped_on_a_char_boundary() {
        let long = "é".repeat(3000);
        let mut b = Vec::new();
        encode_error_chunk(&mut b, 1, errno::EIO, &long);
        let msg_len = u16::from_be_bytes([b[24], b[25]]) as usize;
        assert_eq!(msg_len, 4096);
        assert!(std::str::from_utf8(&b[26..]).is_ok());
    }
}
