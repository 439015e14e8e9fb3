//! The cores shared with other processes: corral processes of one user that run on the same
//! CPUs take turns through a lock file, decode by decode, as models in one process do, for the
//! decodes that take every core (cores.rs).
//!
//! Two processes that each run a model with a thread per core stall each other the same way two
//! models in one process did: on 2 cores, two `corral complete` at once generated 5 tokens/s
//! each instead of 214 (web-server workers that each load the model are the common case).
//!
//! The lock file holds open-file-description locks (Linux), which the kernel drops when a
//! process exits, however it exits:
//! - byte 0, held exclusively while any decode of the process runs: the machine;
//! - byte 1, held shared by processes waiting for byte 0: a process about to take its next turn
//!   first lets them go (file locks have no queue, and the process that just gave the lock back
//!   would otherwise take it again before a waiter wakes).
//!
//! A process that waits longer than `give_up` (another process stopped in a debugger while it
//! held the lock, say) decodes without the lock, and does not wait again until it has seen the
//! lock free: it is never blocked for good. Processes whose CPU sets differ use different files.
//! `CORRAL_CORES_LOCK=0` turns the lock off.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const MACHINE_BYTE: i64 = 0;
const WAITING_BYTE: i64 = 1;
/// How often a waiting process tries the lock.
const POLL: Duration = Duration::from_micros(200);
/// How long a process about to take its turn again lets waiting processes go first.
const GIVE_WAY: Duration = Duration::from_micros(500);

pub(crate) struct MachineLock {
    file: File,
    give_up: Duration,
    /// Gave up waiting on a holder that did not let go: do not wait until the lock is seen free.
    unresponsive: AtomicBool,
    /// The kernel refused a lock operation (no OFD locks): work without the lock.
    broken: AtomicBool,
}

impl MachineLock {
    /// The lock for this user and CPU set, or None where there is none (switched off, or the
    /// file cannot be used).
    pub(crate) fn for_this_machine() -> Option<MachineLock> {
        if std::env::var_os("CORRAL_CORES_LOCK").is_some_and(|v| v == "0") {
            return None;
        }
        let path = default_path()?;
        match MachineLock::open(&path, Duration::from_secs(2)) {
            Ok(lock) => Some(lock),
            Err(e) => {
                tracing::debug!(path = %path.display(), "no cores lock shared with other processes: {e}");
                None
            }
        }
    }

    pub(crate) fn open(path: &Path, give_up: Duration) -> std::io::Result<MachineLock> {
        use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)?;
        // SAFETY: getuid has no preconditions.
        if file.metadata()?.uid() != unsafe { libc::getuid() } {
            return Err(std::io::Error::other("the lock file belongs to another user"));
        }
        Ok(MachineLock { file, give_up, unresponsive: AtomicBool::new(false), broken: AtomicBool::new(false) })
    }

    /// Waits for the machine; false when going on without it (see the module's comment).
    pub(crate) fn acquire(&self) -> bool {
        if self.broken.load(Ordering::Relaxed) {
            return false;
        }
        let others_wait = self.others_waiting();
        let unresponsive = self.unresponsive.load(Ordering::Relaxed);
        if !others_wait || unresponsive {
            if self.try_lock(MACHINE_BYTE, libc::F_WRLCK) {
                self.unresponsive.store(false, Ordering::Relaxed);
                return true;
            }
            if unresponsive || self.broken.load(Ordering::Relaxed) {
                return false;
            }
        }
        self.try_lock(WAITING_BYTE, libc::F_RDLCK);
        let started = Instant::now();
        if others_wait {
            std::thread::sleep(GIVE_WAY);
        }
        let locked = loop {
            if self.try_lock(MACHINE_BYTE, libc::F_WRLCK) {
                break true;
            }
            if self.broken.load(Ordering::Relaxed) {
                break false;
            }
            if started.elapsed() >= self.give_up {
                self.unresponsive.store(true, Ordering::Relaxed);
                tracing::warn!("another process has held the cores for over {:?}; decoding without waiting for it", self.give_up);
                break false;
            }
            std::thread::sleep(POLL);
        };
        self.unlock(WAITING_BYTE);
        locked
    }

    pub(crate) fn release(&self) {
        self.unlock(MACHINE_BYTE);
    }

    pub(crate) fn others_waiting(&self) -> bool {
        let mut query = lock_request(WAITING_BYTE, libc::F_WRLCK);
        // SAFETY: a valid descriptor and a flock struct for the kernel to fill in.
        let answered = unsafe { libc::fcntl(self.file.as_raw_fd(), libc::F_OFD_GETLK, &mut query) } == 0;
        answered && query.l_type != libc::F_UNLCK as libc::c_short
    }

    /// Takes the byte's lock unless another process holds a conflicting one.
    fn try_lock(&self, byte: i64, kind: libc::c_int) -> bool {
        let request = lock_request(byte, kind);
        // SAFETY: a valid descriptor and a filled flock struct; F_OFD_SETLK does not block.
        if unsafe { libc::fcntl(self.file.as_raw_fd(), libc::F_OFD_SETLK, &request) } == 0 {
            return true;
        }
        let error = std::io::Error::last_os_error();
        if !matches!(error.raw_os_error(), Some(libc::EAGAIN | libc::EACCES | libc::EINTR)) {
            tracing::debug!("the cores lock does not work here ({error}); decoding without it");
            self.broken.store(true, Ordering::Relaxed);
        }
        false
    }

    fn unlock(&self, byte: i64) {
        let request = lock_request(byte, libc::F_UNLCK);
        // SAFETY: a valid descriptor and a filled flock struct; unlocking does not block.
        unsafe { libc::fcntl(self.file.as_raw_fd(), libc::F_OFD_SETLK, &request) };
    }
}

fn lock_request(byte: i64, kind: libc::c_int) -> libc::flock {
    // SAFETY: flock is plain data, and all zero is a valid value (OFD locks require l_pid 0).
    let mut request: libc::flock = unsafe { std::mem::zeroed() };
    request.l_type = kind as libc::c_short;
    request.l_whence = libc::SEEK_SET as libc::c_short;
    request.l_start = byte as libc::off_t;
    request.l_len = 1;
    request
}

/// `corral-cores-<uid>-<CPU set>.lock` in the user's runtime folder, else the temp folder.
fn default_path() -> Option<PathBuf> {
    let dir = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from).filter(|d| d.is_dir()).unwrap_or_else(std::env::temp_dir);
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it for this thread.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    if unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) } != 0 {
        return None;
    }
    // FNV-1a over the numbers of the CPUs in the set.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for cpu in 0..libc::CPU_SETSIZE as usize {
        // SAFETY: cpu is below CPU_SETSIZE, the size of the set.
        if unsafe { libc::CPU_ISSET(cpu, &set) } {
            for byte in (cpu as u32).to_le_bytes() {
                hash = (hash ^ byte as u64).wrapping_mul(0x0100_0000_01b3);
            }
        }
    }
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    Some(dir.join(format!("corral-cores-{uid}-{hash:016x}.lock")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    /// Two locks on one file stand for two processes (each open file description is an owner).
    fn two_processes(give_up: Duration) -> (tempfile_path::TempPath, MachineLock, MachineLock) {
        let path = tempfile_path::TempPath::new();
        let a = MachineLock::open(&path.0, give_up).unwrap();
        let b = MachineLock::open(&path.0, give_up).unwrap();
        (path, a, b)
    }

    mod tempfile_path {
        pub struct TempPath(pub std::path::PathBuf);
        impl TempPath {
            pub fn new() -> TempPath {
                static COUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
                let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                TempPath(std::env::temp_dir().join(format!("corral-cores-test-{}-{n}.lock", std::process::id())))
            }
        }
        impl Drop for TempPath {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
    }

    #[test]
    fn one_process_at_a_time_holds_the_machine() {
        let (_path, a, b) = two_processes(Duration::from_secs(60));
        assert!(a.acquire());
        assert!(!b.try_lock(MACHINE_BYTE, libc::F_WRLCK));
        a.release();
        assert!(b.acquire());
        assert!(!a.try_lock(MACHINE_BYTE, libc::F_WRLCK));
        b.release();
    }

    #[test]
    fn a_process_that_exits_gives_the_machine_back() {
        let (_path, a, b) = two_processes(Duration::from_secs(60));
        assert!(a.acquire());
        drop(a); // its descriptor closes, as when a process dies
        assert!(b.acquire());
    }

    #[test]
    fn a_process_taking_its_turn_again_first_lets_waiting_ones_go() {
        let (_path, a, b) = two_processes(Duration::from_secs(60));
        assert!(a.acquire());
        assert!(!a.others_waiting());
        assert!(b.try_lock(WAITING_BYTE, libc::F_RDLCK)); // b waits (without trying, here)
        assert!(a.others_waiting());
        a.release();
        let started = Instant::now();
        assert!(a.acquire());
        assert!(started.elapsed() >= GIVE_WAY, "took the machine again at once");
        b.unlock(WAITING_BYTE);
        assert!(!a.others_waiting());
        a.release();
    }

    #[test]
    fn a_waiting_process_gets_a_turn_from_one_that_keeps_decoding() {
        let (_path, a, b) = two_processes(Duration::from_secs(60));
        let (a, b) = (Arc::new(a), Arc::new(b));
        assert!(a.acquire());
        let b_turns = Arc::new(AtomicUsize::new(0));
        let waiter = {
            let (b, b_turns) = (b.clone(), b_turns.clone());
            std::thread::spawn(move || {
                assert!(b.acquire());
                b_turns.fetch_add(1, Ordering::SeqCst);
                b.release();
            })
        };
        while !a.others_waiting() {
            std::thread::yield_now();
        }
        // `a` decodes on and on (1 ms each); between decodes it gives the waiting process a turn.
        let mut decodes = 0;
        while b_turns.load(Ordering::SeqCst) == 0 {
            std::thread::sleep(Duration::from_millis(1));
            a.release();
            assert!(a.acquire());
            decodes += 1;
            assert!(decodes < 200, "the waiting process never got a turn");
        }
        a.release();
        waiter.join().unwrap();
    }

    #[test]
    fn a_holder_that_never_lets_go_delays_the_others_once_not_for_good() {
        let (_path, a, b) = two_processes(Duration::from_millis(50));
        assert!(a.acquire());
        let started = Instant::now();
        assert!(!b.acquire(), "gives up after give_up");
        assert!(started.elapsed() >= Duration::from_millis(50));
        let started = Instant::now();
        assert!(!b.acquire(), "then does not wait again");
        assert!(started.elapsed() < Duration::from_millis(50));
        a.release();
        assert!(b.acquire(), "and waits again once it has seen the lock free");
        b.release();
        assert!(a.acquire());
    }

    #[test]
    fn a_symbolic_link_in_place_of_the_lock_file_is_refused() {
        let path = tempfile_path::TempPath::new();
        std::os::unix::fs::symlink("/etc/passwd", &path.0).unwrap();
        assert!(MachineLock::open(&path.0, Duration::from_secs(1)).is_err());
    }
}
