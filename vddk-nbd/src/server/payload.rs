//! Write payload buffers, kept for reuse once a write is done.
//!
//! A write's payload is read from the socket into a buffer of its length.
//! A fresh buffer must be zeroed before `read_exact` may fill it (safe Rust
//! hands out no uninitialised bytes), which for a local disk costs about as
//! much as a tenth of the write itself; a buffer that held an earlier
//! payload is already initialised and is simply overwritten. Only a few
//! buffers are kept, so an idle server holds little memory.
//!
//! A kept buffer still holds an earlier payload, possibly another client's.
//! That is safe because [`take`]'s callers overwrite all of it before using
//! it, and give up the request if they cannot.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// At most this many buffers are kept.
const KEPT: usize = 8;
/// Buffers larger than this are freed, not kept: one 32 MiB request must
/// not pin 32 MiB for the life of the server.
const LARGEST_KEPT: usize = 1 << 20;

/// The server's buffers: one pool for every connection and export.
static POOL: Pool = Pool::new();

/// Kept buffers, up to [`KEPT`] of them.
struct Pool(Mutex<Vec<Vec<u8>>>);

impl Pool {
    const fn new() -> Pool {
        Pool(Mutex::new(Vec::new()))
    }

    fn kept(&self) -> MutexGuard<'_, Vec<Vec<u8>>> {
        // Pushing and popping cannot panic halfway, so a poisoned pool is sound.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A kept buffer with room for `len` bytes, if any.
    fn kept_for(&self, len: usize) -> Option<Vec<u8>> {
        let mut p = self.kept();
        let at = p.iter().rposition(|b| b.capacity() >= len);
        at.map(|i| p.swap_remove(i))
    }

    fn take(&self, len: usize) -> Vec<u8> {
        match self.kept_for(len) {
            Some(mut b) => {
                // Only bytes beyond the old length are zeroed, and payloads
                // of one client are mostly of one size.
                b.resize(len, 0);
                b
            }
            None => vec![0u8; len],
        }
    }

    fn give(&self, buf: Vec<u8>) {
        if buf.capacity() == 0 || buf.capacity() > LARGEST_KEPT {
            return;
        }
        let mut p = self.kept();
        if p.len() < KEPT {
            p.push(buf);
        }
    }
}

/// A buffer of exactly `len` bytes whose contents are unspecified (zeroes
/// or an earlier payload): the caller must overwrite all of it.
pub(crate) fn take(len: usize) -> Vec<u8> {
    POOL.take(len)
}

/// An empty buffer with room for `len` bytes, for a read to fill.
pub(crate) fn take_empty(len: usize) -> Vec<u8> {
    match POOL.kept_for(len) {
        Some(mut b) => {
            b.clear();
            b
        }
        None => Vec::with_capacity(len),
    }
}

/// Keeps `buf` for a later [`take`], or frees it if enough are kept.
pub(crate) fn give(buf: Vec<u8>) {
    POOL.give(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    // A pool of its own: the server's is shared with other tests' writes.
    #[test]
    fn buffers_are_reused_at_the_asked_length_and_bounded() {
        let pool = Pool::new();
        let take = |len| pool.take(len);
        let give = |buf| pool.give(buf);
        let first = take(4096);
        assert_eq!(first.len(), 4096);
        let at = first.as_ptr();
        give(first);
        let again = take(1024);
        assert_eq!(
            again.len(),
            1024,
            "a kept buffer is cut to the length asked"
        );
        assert_eq!(again.as_ptr(), at, "the kept buffer is handed out again");
        give(again);
        let grown = take(4096);
        assert_eq!(grown.len(), 4096);
        give(grown);

        give(vec![0u8; LARGEST_KEPT + 1]);
        assert!(pool.kept().iter().all(|b| b.capacity() <= LARGEST_KEPT));
        for _ in 0..KEPT * 2 {
            give(vec![0u8; 512]);
        }
        assert_eq!(pool.kept().len(), KEPT);
        let big = take(LARGEST_KEPT);
        assert_eq!(
            big.len(),
            LARGEST_KEPT,
            "no kept buffer is large enough: a new one"
        );
    }
}
