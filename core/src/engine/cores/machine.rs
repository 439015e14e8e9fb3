//! The cores shared with other processes: corral processes of one user that run on the same
//! CPUs take turns through a lock file, decode by decode, as models in one process do, for the
//! decodes that take every core (cores.rs).
//!
//! Two processes that each run a model with a thread per core stall each other the same way two
//! models in one process did: on 2 cores, two `corral complete` at once generated 5 tokens/s
//! each instead of 214 (web-server workers that each load the model are the common case).
//!
//! The lock file holds open-file-description locks (Linux 3.15 or later), which the kernel
//! drops when a process exits, however it exits:
//! - byte 0, held exclusively by a process while it decodes on every core: the machine;
//! - byte 1, held shared by processes waiting for byte 0: a process about to take its next turn
//!   first lets them go (file locks have no queue, and the process that just gave the lock back
//!   would otherwise take it again before a waiter wakes).
//!
//! The file's first 8 bytes count the turns. A process that has waited `give_up` on one turn
//! (another process stopped in a debugger while it held the lock, say) decodes without the
//! lock, and from then on waits only briefly per decode (still showing the holder that it waits)
//! until it gets the lock again: it is never blocked for good. `CORRAL_CORES_LOCK=0` turns the
//! lock off; where the kernel has no OFD locks it is off.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const MACHINE_BYTE: i64 = 0;
const WAITING_BYTE: i64 = 1;
/// How often a waiting process tries the lock.
const POLL: Duration = Duration::from_micros(200);
/// How long a process about to take its turn again lets waiting processes go first.
const GIVE_WAY: Duration = Duration::from_micros(500);

pub(crate) struct MachineLock {
    path: PathBuf,
    /// The file, opened by the process with this id: a child forked after the first decode
    /// opens its own (sharing the parent's open file description, the two would be one owner).
    file: Mutex<(u32, File)>,
    give_up: Duration,
    /// Gave up on a turn that did not end: wait only briefly until the lock is taken again.
    unresponsive: AtomicBool,
    /// The kernel refused a lock operation (no OFD locks), or the file is gone: do without.
    broken: AtomicBool,
}

impl MachineLock {
    /// The lock of this user's processes on this CPU set, or None where there is none (turned
    /// off, or the file cannot be used). `cores`: the process's budget, shared only when it is
    /// every CPU of the set (under a CPU quota, processes may well fit side by side).
    pub(crate) fn for_this_machine(cores: usize) -> Option<MachineLock> {
        if std::env::var_os("CORRAL_CORES_LOCK").is_some_and(|v| v == "0") {
            return None;
        }
        let (path, cpus) = default_path()?;
        if cpus != cores {
            return None;
        }
        match MachineLock::open(&path, Duration::from_secs(5)) {
            Ok(lock) => Some(lock),
            Err(e) => {
                tracing::debug!(path = %path.display(), "no cores lock shared with other processes: {e}");
                None
            }
        }
    }

    pub(crate) fn open(path: &Path, give_up: Duration) -> std::io::Result<MachineLock> {
        let file = open_file(path)?;
        Ok(MachineLock {
            path: path.to_path_buf(),
            file: Mutex::new((std::process::id(), file)),
            give_up,
            unresponsive: AtomicBool::new(false),
            broken: AtomicBool::new(false),
        })
    }

    /// Waits for the machine; false when going on without it (see the module's comment).
    pub(crate) fn acquire(&self) -> bool {
        if self.broken.load(Ordering::Relaxed) {
            return false;
        }
        let others_wait = self.others_waiting();
        if !others_wait && self.try_lock(MACHINE_BYTE, libc::F_WRLCK) {
            return self.took_turn();
        }
        if self.broken.load(Ordering::Relaxed) {
            return false;
        }
        self.try_lock(WAITING_BYTE, libc::F_RDLCK);
        if others_wait {
            std::thread::sleep(GIVE_WAY);
        }
        let unresponsive = self.unresponsive.load(Ordering::Relaxed);
        let give_up = if unresponsive { GIVE_WAY + 2 * POLL } else { self.give_up };
        let (mut turn, mut since) = (self.turn(), Instant::now());
        let locked = loop {
            if self.try_lock(MACHINE_BYTE, libc::F_WRLCK) {
                break true;
            }
            if self.broken.load(Ordering::Relaxed) {
                break false;
            }
            // Only one turn that lasts `give_up` counts, not a queue of others' turns.
            let now = self.turn();
            if now != turn {
                (turn, since) = (now, Instant::now());
            } else if since.elapsed() >= give_up {
                if !unresponsive {
                    self.unresponsive.store(true, Ordering::Relaxed);
                    tracing::warn!("another process has held the cores for over {:?}; decoding without waiting for it", self.give_up);
                }
                break false;
            }
            std::thread::sleep(POLL);
        };
        self.unlock(WAITING_BYTE);
        locked && self.took_turn()
    }

    pub(crate) fn release(&self) {
        self.unlock(MACHINE_BYTE);
    }

    /// Counts the turn this process just took (holding byte 0, it alone writes the count).
    fn took_turn(&self) -> bool {
        self.unresponsive.store(false, Ordering::Relaxed);
        let next = self.turn().wrapping_add(1);
        let _ = self.with_file(|file| file.write_all_at(&next.to_le_bytes(), 0));
        true
    }

    fn turn(&self) -> u64 {
        let mut count = [0u8; 8];
        match self.with_file(|file| file.read_exact_at(&mut count, 0)) {
            Some(Ok(())) => u64::from_le_bytes(count),
            _ => 0, // a new, empty file
        }
    }

    pub(crate) fn others_waiting(&self) -> bool {
        let mut query = lock_request(WAITING_BYTE, libc::F_WRLCK);
        // SAFETY: a valid descriptor and a flock struct for the kernel to fill in.
        let answered = self.with_file(|file| unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_GETLK, &mut query) } == 0);
        answered == Some(true) && query.l_type != libc::F_UNLCK as libc::c_short
    }

    /// Takes the byte's lock unless another process holds a conflicting one.
    fn try_lock(&self, byte: i64, kind: libc::c_int) -> bool {
        let request = lock_request(byte, kind);
        let result = self.with_file(|file| {
            // SAFETY: a valid descriptor and a filled flock struct; F_OFD_SETLK does not block.
            if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &request) } == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
        match result {
            Some(Ok(())) => true,
            Some(Err(error)) => {
                if !matches!(error.raw_os_error(), Some(libc::EAGAIN | libc::EACCES | libc::EINTR)) {
                    tracing::debug!("the cores lock does not work here ({error}); decoding without it");
                    self.broken.store(true, Ordering::Relaxed);
                }
                false
            }
            None => false,
        }
    }

    fn unlock(&self, byte: i64) {
        let request = lock_request(byte, libc::F_UNLCK);
        // SAFETY: a valid descriptor and a filled flock struct; unlocking does not block.
        self.with_file(|file| unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &request) });
    }

    /// Runs `f` on this process's descriptor of the file (None: it cannot be reopened).
    fn with_file<T>(&self, f: impl FnOnce(&File) -> T) -> Option<T> {
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if file.0 != std::process::id() {
            match open_file(&self.path) {
                Ok(reopened) => *file = (std::process::id(), reopened),
                Err(e) => {
                    tracing::debug!("the cores lock cannot be reopened ({e}); decoding without it");
                    self.broken.store(true, Ordering::Relaxed);
                    return None;
                }
            }
        }
        Some(f(&file.1))
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

fn open_file(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    // SAFETY: getuid has no preconditions.
    if file.metadata()?.uid() != unsafe { libc::getuid() } {
        return Err(std::io::Error::other("the lock file belongs to another user"));
    }
    Ok(file)
}

/// `/dev/shm/corral-cores-<uid>-<CPU set>.lock` (the temp folder where there is no /dev/shm):
/// one folder every process of the user agrees on, whatever its environment, and that cleaners
/// of old files leave alone. Also the number of CPUs in the set.
fn default_path() -> Option<(PathBuf, usize)> {
    let shm = Path::new("/dev/shm");
    let dir = if shm.is_dir() { shm.to_path_buf() } else { std::env::temp_dir() };
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it for this thread.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    if unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) } != 0 {
        return None;
    }
    // FNV-1a over the numbers of the CPUs in the set.
    let (mut hash, mut cpus) = (0xcbf2_9ce4_8422_2325u64, 0);
    for cpu in 0..libc::CPU_SETSIZE as usize {
        // SAFETY: cpu is below CPU_SETSIZE, the size of the set.
        if unsafe { libc::CPU_ISSET(cpu, &set) } {
            cpus += 1;
            for byte in (cpu as u32).to_le_bytes() {
                hash = (hash ^ byte as u64).wrapping_mul(0x0100_0000_01b3);
            }
        }
    }
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    Some((dir.join(format!("corral-cores-{uid}-{hash:016x}.lock")), cpus))
}

/// Waits until `condition` holds; fails a test that would otherwise hang.
#[cfg(test)]
pub(crate) fn wait_until(condition: impl Fn() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < Duration::from_secs(30), "waited 30 s in vain");
        std::thread::yield_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    /// A lock file's path, removed on drop.
    struct TempPath(PathBuf);

    impl TempPath {
        fn new() -> TempPath {
            static COUNT: AtomicUsize = AtomicUsize::new(0);
            let n = COUNT.fetch_add(1, Ordering::Relaxed);
            TempPath(std::env::temp_dir().join(format!("corral-cores-test-{}-{n}.lock", std::process::id())))
        }
    }

    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    /// Locks on one file stand for processes (each open file description is an owner).
    fn processes<const N: usize>(give_up: Duration) -> (TempPath, [MachineLock; N]) {
        let path = TempPath::new();
        let locks = std::array::from_fn(|_| MachineLock::open(&path.0, give_up).unwrap());
        (path, locks)
    }

    #[test]
    fn one_process_at_a_time_holds_the_machine() {
        let (_path, [a, b]) = processes(Duration::from_secs(60));
        assert!(a.acquire());
        assert!(!b.try_lock(MACHINE_BYTE, libc::F_WRLCK));
        a.release();
        assert!(b.acquire());
        assert!(!a.try_lock(MACHINE_BYTE, libc::F_WRLCK));
        b.release();
        assert_eq!(a.turn(), 2);
    }

    #[test]
    fn a_process_that_exits_gives_the_machine_back() {
        let (_path, [a, b]) = processes(Duration::from_secs(60));
        assert!(a.acquire());
        drop(a); // its descriptor closes, as when a process dies
        assert!(b.acquire());
    }

    #[test]
    fn a_process_taking_its_turn_again_first_lets_waiting_ones_go() {
        let (_path, [a, b]) = processes(Duration::from_secs(60));
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
        let (_path, [a, b]) = processes(Duration::from_secs(60));
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
        wait_until(|| a.others_waiting());
        // `a` decodes on and on (1 ms each); between decodes it gives the waiting process a turn.
        let mut decodes = 0;
        while b_turns.load(Ordering::SeqCst) == 0 {
            std::thread::sleep(Duration::from_millis(1));
            a.release();
            assert!(a.acquire());
            decodes += 1;
            assert!(decodes < 1000, "the waiting process never got a turn");
        }
        a.release();
        waiter.join().unwrap();
    }

    #[test]
    fn a_turn_that_does_not_end_delays_the_others_once_not_for_good() {
        let (_path, [a, b]) = processes(Duration::from_millis(50));
        assert!(a.acquire());
        let started = Instant::now();
        assert!(!b.acquire(), "gives up after give_up");
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert!(!b.acquire(), "then waits briefly, and goes on");
        a.release();
        assert!(b.acquire(), "and takes the lock once it is free");
        b.release();
        assert!(a.acquire());
    }

    #[test]
    fn a_queue_of_turns_longer_than_give_up_is_not_a_turn_that_does_not_end() {
        let (_path, [a, b]) = processes(Duration::from_millis(1000));
        let a = Arc::new(a);
        assert!(a.acquire());
        // Three turns of 600 ms (the lock passing between other processes, as b sees it): b
        // waits 1.8 s in all, but never 1 s on one turn.
        let others = {
            let a = a.clone();
            std::thread::spawn(move || {
                for _ in 0..2 {
                    std::thread::sleep(Duration::from_millis(600));
                    a.took_turn();
                }
                std::thread::sleep(Duration::from_millis(600));
                a.release();
            })
        };
        let started = Instant::now();
        assert!(b.acquire(), "gave up while the turns went on");
        assert!(started.elapsed() >= Duration::from_millis(1800));
        others.join().unwrap();
    }

    #[test]
    fn a_symbolic_link_in_place_of_the_lock_file_is_refused() {
        let (target, link) = (TempPath::new(), TempPath::new());
        std::fs::write(&target.0, b"").unwrap();
        std::os::unix::fs::symlink(&target.0, &link.0).unwrap();
        let error = MachineLock::open(&link.0, Duration::from_secs(1)).err().expect("refused");
        assert_eq!(error.raw_os_error(), Some(libc::ELOOP));
    }
}
