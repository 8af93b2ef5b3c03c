//! Read, Write, ReadAsync, WriteAsync, Wait, QueryAllocatedBlocks and
//! FreeBlockList.

use std::ffi::c_void;
use std::time::Instant;

use super::{disk_call, put, vix, with_disk};
use crate::asyncio::{self, Request, SendPtr};
use crate::ffi::*;
use crate::handles::{self, Allocation, Disk};
use crate::knobs::{self, Op};
use crate::link::{self, Transfer};
use crate::rules::require_init;
use crate::{errors, log};

/// The checks every read and write makes before touching the disk;
/// returns the length in bytes.
fn check_io(
    disk: &Disk,
    function: &str,
    start: u64,
    count: u64,
    buf_null: bool,
    write: bool,
) -> Result<usize, VixError> {
    if buf_null {
        log::warn(&format!("VixDiskLib: {function}: NULL buffer"));
        return Err(VIX_E_INVALID_ARG);
    }
    if start
        .checked_add(count)
        .map_or(true, |end| end > disk.capacity)
    {
        log::warn(&format!(
            "VixDiskLib: {function}: sectors {start}+{count} are beyond the disk's capacity of {} sectors",
            disk.capacity
        ));
        return Err(VIX_E_DISK_OUTOFRANGE);
    }
    if write && disk.read_only {
        log::warn(&format!(
            "VixDiskLib: {function}: {} is open read-only",
            disk.path.display()
        ));
        return Err(VIX_E_FILE_READ_ONLY);
    }
    let bytes = count.checked_mul(SECTOR).ok_or(VIX_E_DISK_OUTOFRANGE)?;
    if let Some(max) = knobs::get().max_request {
        if bytes > max {
            log::warn(&format!(
                "[NFC ERROR] NfcFssrvrProcessErrorMsg: received NFC error 5 from server: \
                 Failed to allocate the requested {bytes} bytes"
            ));
            return Err(VIX_E_OUT_OF_MEMORY);
        }
    }
    usize::try_from(bytes).map_err(|_| VIX_E_OUT_OF_MEMORY)
}

fn sync_io(
    handle: Handle,
    function: &'static str,
    start: u64,
    count: u64,
    buf: *mut u8,
    write: bool,
) -> VixError {
    disk_call(function, handle, |ctx, disk| {
        knobs::call_latency();
        disk.check_link(function)?;
        let len = check_io(disk, function, start, count, buf.is_null(), write)?;
        if disk.in_flight() > 0 {
            log::warn(&format!(
                "VixDiskLib: {function} while asynchronous requests are in flight on the same handle; \
                 call VixDiskLib_Wait first"
            ));
            return Err(VIX_E_ASYNC_MIXEDMODE_UNSUPPORTED);
        }
        if let Some(code) = knobs::get().inject(if write { Op::Write } else { Op::Read }) {
            log::warn(&format!(
                "VixDiskLib: {function}: injected failure {}",
                errors::name(code)
            ));
            return Err(code);
        }
        if let Some(link) = &disk.link {
            // The transfer takes its time on the link; a loss before it
            // ends fails the request (and the connection stays lost).
            let transfer = link.reserve(len as u64);
            link::sleep_until(transfer.at());
            if link.fails(transfer) {
                return Err(link.conn.fail(function, &disk.path.display().to_string()));
            }
        }
        let mut engine = disk.engine();
        let result = if write {
            // SAFETY: non-NULL (checked) and, per the ABI, `count` sectors long.
            engine.write(start, unsafe {
                std::slice::from_raw_parts(buf as *const u8, len)
            })
        } else {
            // SAFETY: non-NULL (checked), `count` sectors long and writable per the ABI.
            engine.read(start, unsafe { std::slice::from_raw_parts_mut(buf, len) })
        };
        result.map_err(|e| {
            log::warn(&format!(
                "VixDiskLib: {function} at sector {start}: {}",
                errors::describe(&e)
            ));
            errors::from_vmdk(&e)
        })?;
        ctx.bytes = len as u64;
        Ok(VIX_OK)
    })
}

/// Reads `count` sectors from `start` into `buf`.
#[no_mangle]
pub extern "C" fn VixDiskLib_Read(
    handle: Handle,
    start: u64,
    count: u64,
    buf: *mut u8,
) -> VixError {
    sync_io(handle, "VixDiskLib_Read", start, count, buf, false)
}

/// Writes `count` sectors from `buf` at `start`.
#[no_mangle]
pub extern "C" fn VixDiskLib_Write(
    handle: Handle,
    start: u64,
    count: u64,
    buf: *const u8,
) -> VixError {
    sync_io(
        handle,
        "VixDiskLib_Write",
        start,
        count,
        buf as *mut u8,
        true,
    )
}

#[allow(clippy::too_many_arguments)]
fn async_io(
    handle: Handle,
    function: &'static str,
    start: u64,
    count: u64,
    buf: *mut u8,
    callback: CompletionCb,
    data: *mut c_void,
    write: bool,
) -> VixError {
    vix(function, |ctx| {
        // The disk is no longer busy when the request is queued: a stopped
        // queue completes it at once, and the callback may make the next
        // call on this handle.
        let (req, due) = with_disk(function, handle, |disk| {
            disk.check_link(function)?;
            let len = check_io(disk, function, start, count, buf.is_null(), write)?;
            let knobs = knobs::get();
            if !disk.try_add_in_flight(knobs.max_in_flight) {
                log::warn(&format!(
                    "VixDiskLib: {function}: {} requests already in flight on this handle (FAKE_VDDK_MAX_IN_FLIGHT); \
                     wait for completions before submitting more",
                    disk.in_flight()
                ));
                return Err(VIX_E_OBJECT_IS_BUSY);
            }
            let fail = knobs.inject(if write { Op::Write } else { Op::Read });
            if let Some(code) = fail {
                log::warn(&format!(
                    "VixDiskLib: {function}: injected failure {} (via the callback)",
                    errors::name(code)
                ));
            }
            ctx.bytes = len as u64;
            // Latency overlaps between requests; transfers on the link follow
            // each other per connection, and a loss fails the request when it
            // happens, without the latency.
            let (due, transfer) = match (&disk.link, fail) {
                (Some(link), None) => match link.reserve(len as u64) {
                    t @ Transfer::Done(end) => (end + knobs.async_latency, Some(t)),
                    t @ Transfer::Lost(at) => (at, Some(t)),
                },
                _ => (Instant::now() + knobs.async_latency, None),
            };
            let req = Request {
                disk: disk.clone(),
                write,
                sector: start,
                sectors: count,
                buf: SendPtr(buf as *mut c_void),
                callback,
                data: SendPtr(data),
                fail,
                transfer,
            };
            Ok((req, due))
        })?;
        asyncio::submit(req, due);
        Ok(VIX_ASYNC)
    })
}

/// Starts a read; `callback(data, result)` runs when it completes.
#[no_mangle]
pub extern "C" fn VixDiskLib_ReadAsync(
    handle: Handle,
    start: u64,
    count: u64,
    buf: *mut u8,
    callback: CompletionCb,
    data: *mut c_void,
) -> VixError {
    async_io(
        handle,
        "VixDiskLib_ReadAsync",
        start,
        count,
        buf,
        callback,
        data,
        false,
    )
}

/// Starts a write; `callback(data, result)` runs when it completes.
#[no_mangle]
pub extern "C" fn VixDiskLib_WriteAsync(
    handle: Handle,
    start: u64,
    count: u64,
    buf: *const u8,
    callback: CompletionCb,
    data: *mut c_void,
) -> VixError {
    async_io(
        handle,
        "VixDiskLib_WriteAsync",
        start,
        count,
        buf as *mut u8,
        callback,
        data,
        true,
    )
}

/// Waits until every async request of the handle has completed.
#[no_mangle]
pub extern "C" fn VixDiskLib_Wait(handle: Handle) -> VixError {
    // No busy flag: completion callbacks may legitimately submit more
    // requests on this handle while its owner waits.
    vix("VixDiskLib_Wait", |_| {
        require_init("VixDiskLib_Wait")?;
        let disk = handles::disk(handle, "VixDiskLib_Wait")?;
        disk.wait_idle();
        Ok(VIX_OK)
    })
}

/// VDDK's argument rules for QueryAllocatedBlocks.
fn check_query(start: u64, count: u64, chunk: u64, capacity: u64) -> Result<(), String> {
    if chunk < MIN_CHUNK_SIZE {
        return Err(format!(
            "chunk size {chunk} is below the minimum of {MIN_CHUNK_SIZE} sectors"
        ));
    }
    if count == 0 || start % chunk != 0 || count % chunk != 0 {
        return Err(format!(
            "start {start} and count {count} must be non-zero multiples of the chunk size {chunk}; \
             report an unaligned tail of the disk as data instead of querying it"
        ));
    }
    if count / chunk > MAX_CHUNK_NUMBER {
        return Err(format!(
            "{} chunks requested; at most {MAX_CHUNK_NUMBER} per call",
            count / chunk
        ));
    }
    if start.checked_add(count).map_or(true, |end| end > capacity) {
        return Err(format!(
            "sectors {start}+{count} are beyond the capacity of {capacity} sectors"
        ));
    }
    Ok(())
}

/// The allocated chunks of a range, as a malloc'd BlockList.
#[no_mangle]
pub extern "C" fn VixDiskLib_QueryAllocatedBlocks(
    handle: Handle,
    start: u64,
    count: u64,
    chunk: u64,
    out: *mut *mut BlockList,
) -> VixError {
    disk_call("VixDiskLib_QueryAllocatedBlocks", handle, |_, disk| {
        disk.check_link("VixDiskLib_QueryAllocatedBlocks")?;
        if out.is_null() {
            return Err(VIX_E_INVALID_ARG);
        }
        if let Err(why) = check_query(start, count, chunk, disk.capacity) {
            log::warn(&format!("VixDiskLib: QueryAllocatedBlocks: {why}"));
            return Err(VIX_E_INVALID_ARG);
        }
        let knobs = knobs::get();
        knobs::call_latency();
        if !knobs.query_cost.is_zero() {
            std::thread::sleep(knobs.query_cost);
        }
        if let Some(code) = knobs.inject(Op::Query) {
            log::warn(&format!(
                "VixDiskLib: QueryAllocatedBlocks: injected failure {}",
                errors::name(code)
            ));
            return Err(code);
        }
        let ranges = disk
            .engine()
            .allocated(start, count, chunk)
            .map_err(|e| errors::from_vmdk(&e))?;
        let size =
            std::mem::size_of::<BlockList>().max(8) + ranges.len() * std::mem::size_of::<Block>();
        // SAFETY: malloc of the header plus `ranges.len()` blocks, checked for NULL.
        let list = unsafe { libc::malloc(size) } as *mut BlockList;
        if list.is_null() {
            return Err(VIX_E_OUT_OF_MEMORY);
        }
        // SAFETY: `list` has room for the header and every block written.
        unsafe {
            (*list).num_blocks = ranges.len() as u32;
            let blocks = std::ptr::addr_of_mut!((*list).blocks) as *mut Block;
            for (i, (offset, length)) in ranges.iter().enumerate() {
                blocks.add(i).write(Block {
                    offset: *offset,
                    length: *length,
                });
            }
        }
        handles::track(list as *mut c_void, Allocation::BlockList);
        // SAFETY: checked non-NULL above.
        unsafe { put(out, list) }?;
        Ok(VIX_OK)
    })
}

/// Frees a QueryAllocatedBlocks result.
#[no_mangle]
pub extern "C" fn VixDiskLib_FreeBlockList(list: *mut BlockList) -> VixError {
    vix("VixDiskLib_FreeBlockList", |_| {
        if list.is_null() {
            return Ok(VIX_OK);
        }
        handles::untrack(
            list as *mut c_void,
            &[Allocation::BlockList],
            "VixDiskLib_FreeBlockList",
        )?;
        // SAFETY: tracked as a BlockList we malloc'd; freed once.
        unsafe { libc::free(list as *mut c_void) };
        Ok(VIX_OK)
    })
}

#[cfg(test)]
mod tests {
    use super::check_query;

    #[test]
    fn query_rules() {
        assert!(check_query(0, 1024, 128, 2048).is_ok());
        assert!(check_query(0, 1024, 64, 2048)
            .unwrap_err()
            .contains("minimum"));
        assert!(check_query(64, 128, 128, 2048).is_err());
        assert!(check_query(0, 100, 128, 2048).is_err());
        assert!(check_query(0, 0, 128, 2048).is_err());
        assert!(check_query(1920, 256, 128, 2048)
            .unwrap_err()
            .contains("capacity"));
        let max = 512 * 1024 * 128;
        assert!(check_query(0, max, 128, u64::MAX).is_ok());
        assert!(check_query(0, max + 128, 128, u64::MAX)
            .unwrap_err()
            .contains("at most"));
    }
}
