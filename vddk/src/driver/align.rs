//! Byte requests over a disk that reads and writes whole sectors.
//!
//! A read is widened to whole sectors and its bytes moved to the front of
//! the same buffer. A write that starts or ends inside a sector reads that
//! sector first and writes the merged sectors (read-modify-write); callers
//! make sure nothing else touches the disk in between.

use super::schedule::Span;
use crate::disk::Disk;
use crate::error::Result;
use crate::SECTOR_SIZE;

/// Sectors covering bytes `[offset, offset + len)`.
pub(crate) fn span(offset: u64, len: u64) -> Span {
    Span {
        start: offset / SECTOR_SIZE,
        end: (offset + len).div_ceil(SECTOR_SIZE),
    }
}

/// Whether the bytes are whole sectors.
pub(crate) fn is_aligned(offset: u64, len: u64) -> bool {
    offset % SECTOR_SIZE == 0 && len % SECTOR_SIZE == 0
}

/// Where a read's bytes start within its sector span.
pub(crate) fn skip(offset: u64) -> usize {
    (offset % SECTOR_SIZE) as usize
}

/// Keeps bytes `[skip, skip + len)` of a span read, moved to the front.
pub(crate) fn trim_read(buf: &mut Vec<u8>, skip: usize, len: usize) {
    if skip != 0 {
        buf.copy_within(skip..skip + len, 0);
    }
    buf.truncate(len);
}

impl Span {
    /// Length in bytes.
    pub(crate) fn bytes(self) -> u64 {
        (self.end - self.start) * SECTOR_SIZE
    }
}

/// Reads `len` bytes at `offset` into `buf` (any alignment), which then
/// holds exactly them.
pub(crate) fn read(disk: &Disk, offset: u64, len: usize, buf: &mut Vec<u8>) -> Result<()> {
    let s = span(offset, len as u64);
    disk.read_into(s.start * SECTOR_SIZE, s.bytes() as usize, buf)?;
    trim_read(buf, skip(offset), len);
    Ok(())
}

/// Writes `data` at `offset` (any alignment). Borrowed, so that a write
/// the connection lost can be made again with the same bytes.
pub(crate) fn write(disk: &Disk, offset: u64, data: &[u8]) -> Result<()> {
    if is_aligned(offset, data.len() as u64) {
        return disk.write_at(offset, data);
    }
    let s = span(offset, data.len() as u64);
    let sector = SECTOR_SIZE as usize;
    let mut merged = vec![0u8; s.bytes() as usize];
    let head = skip(offset);
    let tail = ((offset + data.len() as u64) % SECTOR_SIZE) as usize;
    if head != 0 {
        disk.read_at(s.start * SECTOR_SIZE, &mut merged[..sector])?;
    }
    // The last sector, unless it is the first one and was just read.
    if tail != 0 && (s.end - 1 != s.start || head == 0) {
        let at = merged.len() - sector;
        disk.read_at((s.end - 1) * SECTOR_SIZE, &mut merged[at..])?;
    }
    merged[head..head + data.len()].copy_from_slice(data);
    disk.write_at(s.start * SECTOR_SIZE, &merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_cover_partial_sectors() {
        assert_eq!(span(0, 512), Span { start: 0, end: 1 });
        assert_eq!(span(100, 10), Span { start: 0, end: 1 });
        assert_eq!(span(500, 24), Span { start: 0, end: 2 });
        assert_eq!(span(1024, 1), Span { start: 2, end: 3 });
        assert_eq!(span(500, 24).bytes(), 1024);
        assert!(is_aligned(512, 1024));
        assert!(!is_aligned(512, 100));
        assert!(!is_aligned(1, 512));
    }

    #[test]
    fn a_span_read_is_trimmed_in_place() {
        let mut buf: Vec<u8> = (0..=255).cycle().take(1024).collect();
        trim_read(&mut buf, 500, 24);
        let want: Vec<u8> = (500..524).map(|i| (i % 256) as u8).collect();
        assert_eq!(buf, want);
        let mut whole = vec![9u8; 512];
        trim_read(&mut whole, 0, 512);
        assert_eq!(whole.len(), 512);
    }
}
