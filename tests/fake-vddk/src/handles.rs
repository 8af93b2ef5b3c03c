//! Live connections and disk handles, and the C memory handed out.
//!
//! Handle values are ids from a counter, cast to pointers: the fake never
//! dereferences a handle, so a stale or made-up pointer is detected by a
//! registry lookup instead of crashing. Lock order: REGISTRY, then a disk's
//! `engine`, then its `inflight`.

use std::collections::HashMap;
use std::ffi::{c_void, CStr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::ThreadId;

use crate::ffi::*;
use crate::link::{ConnLink, DiskLink, LinkConfig};
use crate::remote::{Server, Vm};
use crate::rules::violation;
use crate::vmdk::VmdkDisk;

/// The ConnectEx parameters as owned strings (for GetConnectParams and the
/// remote checks).
#[derive(Debug, Clone, Default)]
pub struct OwnedParams {
    pub vmx_spec: Option<String>,
    pub server_name: Option<String>,
    pub thumbprint: Option<String>,
    pub cred_type: u32,
    pub user: Option<String>,
    pub password: Option<String>,
    pub cookie: Option<String>,
    pub key: Option<String>,
    pub port: u32,
    pub nfc_port: u32,
}

/// What a remote connection resolved to at ConnectEx.
#[derive(Debug, Clone)]
pub struct RemoteConn {
    pub server: Server,
    pub vm: Option<Vm>,
    pub snapshot: Option<String>,
    /// The transports both sides allow, in the caller's order.
    pub transports: Vec<String>,
    /// The server's link settings with the environment's overrides.
    pub link: LinkConfig,
    /// The ESXi host the NFC connections go to (the VM's `esx_host`, or
    /// the server).
    pub nfc_host: String,
}

/// A live connection.
#[derive(Debug)]
pub struct Conn {
    pub read_only: bool,
    pub params: OwnedParams,
    pub remote: Option<RemoteConn>,
    pub open_disks: AtomicUsize,
    /// The link model, for remote connections with link settings only.
    pub link: Option<Arc<ConnLink>>,
}

/// A live disk handle.
pub struct Disk {
    pub conn: Arc<Conn>,
    pub engine: Mutex<VmdkDisk>,
    pub path: PathBuf,
    pub read_only: bool,
    pub transport: &'static CStr,
    pub capacity: u64,
    pub open_thread: ThreadId,
    /// This handle's NFC connection in the link model, if any.
    pub link: Option<DiskLink>,
    busy: AtomicBool,
    /// Async requests until their callback has run (what Wait waits for).
    inflight: Mutex<usize>,
    idle: Condvar,
    /// Async requests until their I/O is done: the ones that count against
    /// FAKE_VDDK_MAX_IN_FLIGHT, so a callback (or a thread it wakes) may
    /// submit the next request at once.
    admitted: AtomicUsize,
}

/// Marks a disk busy for the duration of one API call.
pub struct BusyGuard<'a>(&'a Disk);

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        self.0.busy.store(false, Ordering::Release);
    }
}

impl Disk {
    /// Wraps an opened engine disk.
    pub fn new(
        conn: Arc<Conn>,
        engine: VmdkDisk,
        path: PathBuf,
        read_only: bool,
        transport: &'static CStr,
        link: Option<DiskLink>,
    ) -> Disk {
        let capacity = engine.capacity();
        Disk {
            conn,
            engine: Mutex::new(engine),
            path,
            read_only,
            transport,
            capacity,
            open_thread: std::thread::current().id(),
            link,
            busy: AtomicBool::new(false),
            inflight: Mutex::new(0),
            idle: Condvar::new(),
            admitted: AtomicUsize::new(0),
        }
    }

    /// Claims the handle for one call; a second concurrent call is a breach.
    pub fn enter(&self, function: &str) -> Result<BusyGuard<'_>, VixError> {
        if self.busy.swap(true, Ordering::AcqRel) {
            return Err(violation(
                VIX_E_OBJECT_IS_BUSY,
                &format!(
                    "{function} on disk {} while another call on the same handle is running; \
                     issue one handle's calls from one thread at a time",
                    self.path.display()
                ),
            ));
        }
        Ok(BusyGuard(self))
    }

    /// Fails at once, with the real library's code, if the handle's
    /// connection is lost (see link.rs); free when there is no link model.
    pub fn check_link(&self, function: &str) -> Result<(), VixError> {
        match &self.link {
            None => Ok(()),
            Some(l) => l.conn.check(function, &self.path.display().to_string()),
        }
    }

    /// The engine, even if a previous holder panicked.
    pub fn engine(&self) -> MutexGuard<'_, VmdkDisk> {
        self.engine.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Async requests submitted whose I/O is not done yet.
    pub fn in_flight(&self) -> usize {
        self.admitted.load(Ordering::Acquire)
    }

    /// Counts a new async request, unless `limit` are already in flight.
    pub fn try_add_in_flight(&self, limit: Option<usize>) -> bool {
        let mut n = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
        if limit.is_some_and(|l| self.admitted.load(Ordering::Acquire) >= l) {
            return false;
        }
        self.admitted.fetch_add(1, Ordering::AcqRel);
        *n += 1;
        true
    }

    /// Marks one async request's I/O done, before its callback runs.
    pub fn release_slot(&self) {
        let _ = self
            .admitted
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    /// Marks one async request completed (after its callback ran).
    pub fn complete_one(&self) {
        let mut n = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
        *n = n.saturating_sub(1);
        if *n == 0 {
            self.idle.notify_all();
        }
    }

    /// Blocks until no async request of this handle is in flight.
    pub fn wait_idle(&self) {
        let mut n = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
        while *n > 0 {
            n = self.idle.wait(n).unwrap_or_else(|e| e.into_inner());
        }
    }
}

enum Entry {
    Conn(Arc<Conn>),
    Disk(Arc<Disk>),
}

#[derive(Default)]
struct Registry {
    next: usize,
    live: HashMap<usize, Entry>,
    /// Memory handed to the caller that a Free function may release.
    allocations: HashMap<usize, Allocation>,
}

/// Kinds of memory the fake hands out, each with its own Free function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocation {
    Info,
    BlockList,
    ErrorText,
    /// From AllocateConnectParams: the caller owns the strings in it.
    ConnectParams,
    /// From GetConnectParams: the fake owns the strings in it.
    ConnectParamsWithStrings,
}

static REGISTRY: Mutex<Option<Registry>> = Mutex::new(None);

/// Ids start well away from address zero and step by 16 so that they look
/// like (and are as distinct as) real pointers.
const FIRST_ID: usize = 0x5a00_0000;

fn registry() -> MutexGuard<'static, Option<Registry>> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

fn with_registry<T>(f: impl FnOnce(&mut Registry) -> T) -> T {
    let mut guard = registry();
    let reg = guard.get_or_insert_with(|| Registry {
        next: FIRST_ID,
        ..Registry::default()
    });
    f(reg)
}

fn insert(entry: Entry) -> *mut c_void {
    with_registry(|reg| {
        reg.next += 16;
        let id = reg.next;
        reg.live.insert(id, entry);
        id as *mut c_void
    })
}

/// Registers a connection and returns its handle value.
pub fn add_conn(conn: Arc<Conn>) -> Connection {
    insert(Entry::Conn(conn))
}

/// Registers a disk and returns its handle value.
pub fn add_disk(disk: Arc<Disk>) -> Handle {
    insert(Entry::Disk(disk))
}

fn describe_stale(reg: &Registry, id: usize, kind: &str) -> String {
    if id == 0 {
        format!("NULL {kind} handle")
    } else if id > FIRST_ID && id <= reg.next && id % 16 == FIRST_ID % 16 {
        format!("{kind} handle {id:#x} used after it was closed")
    } else {
        format!("{id:#x} is not a {kind} handle this library returned")
    }
}

/// The connection behind a handle value; unknown or closed ones are a breach.
pub fn conn(handle: Connection, function: &str) -> Result<Arc<Conn>, VixError> {
    let id = handle as usize;
    let found = with_registry(|reg| match reg.live.get(&id) {
        Some(Entry::Conn(c)) => Ok(c.clone()),
        Some(Entry::Disk(_)) => Err(format!("{id:#x} is a disk handle, not a connection")),
        None => Err(describe_stale(reg, id, "connection")),
    });
    found.map_err(|why| violation(VIX_E_INVALID_HANDLE, &format!("{function}: {why}")))
}

/// The disk behind a handle value; unknown or closed ones are a breach.
pub fn disk(handle: Handle, function: &str) -> Result<Arc<Disk>, VixError> {
    let id = handle as usize;
    let found = with_registry(|reg| match reg.live.get(&id) {
        Some(Entry::Disk(d)) => Ok(d.clone()),
        Some(Entry::Conn(_)) => Err(format!("{id:#x} is a connection, not a disk handle")),
        None => Err(describe_stale(reg, id, "disk")),
    });
    found.map_err(|why| violation(VIX_E_INVALID_HANDLE, &format!("{function}: {why}")))
}

/// Removes a handle from the registry (Close/Disconnect).
pub fn remove(handle: *mut c_void) {
    with_registry(|reg| reg.live.remove(&(handle as usize)));
}

/// Counts of live (connections, disks).
pub fn live_counts() -> (usize, usize) {
    with_registry(|reg| {
        let disks = reg
            .live
            .values()
            .filter(|e| matches!(e, Entry::Disk(_)))
            .count();
        (reg.live.len() - disks, disks)
    })
}

/// Every live disk (for Exit to drain).
pub fn live_disks() -> Vec<Arc<Disk>> {
    with_registry(|reg| {
        reg.live
            .values()
            .filter_map(|e| match e {
                Entry::Disk(d) => Some(d.clone()),
                Entry::Conn(_) => None,
            })
            .collect()
    })
}

/// Forgets every handle (Exit).
pub fn clear() {
    with_registry(|reg| reg.live.clear());
}

/// Records memory given to the caller.
pub fn track(ptr: *mut c_void, kind: Allocation) {
    if !ptr.is_null() {
        with_registry(|reg| reg.allocations.insert(ptr as usize, kind));
    }
}

/// Takes back memory the caller frees, if the fake handed it out as one of
/// `kinds`; anything else is a breach and is not freed.
pub fn untrack(
    ptr: *mut c_void,
    kinds: &[Allocation],
    function: &str,
) -> Result<Allocation, VixError> {
    let id = ptr as usize;
    let found = with_registry(|reg| match reg.allocations.get(&id) {
        Some(kind) if kinds.contains(kind) => {
            let kind = *kind;
            reg.allocations.remove(&id);
            Ok(kind)
        }
        Some(kind) => Err(format!(
            "{function} given a pointer that came from the {kind:?} allocator"
        )),
        None => Err(format!(
            "{function} given {id:#x}, which this library did not allocate or was already freed"
        )),
    });
    found.map_err(|why| violation(VIX_E_INVALID_ARG, &why))
}
