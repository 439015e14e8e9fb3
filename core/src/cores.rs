//! The machine's cores, shared by the decodes of every model in the process.
//!
//! A decode runs ggml's threads for its duration, and they spin at every operation's barrier.
//! Two decodes that together run more threads than there are cores therefore wait out each
//! other's time slices at every barrier: two models generating at once on a 2-core machine ran
//! about 35 times slower than the same work one after the other. So a decode first takes as
//! many cores as it runs threads (all of them at most) and gives them back when it ends;
//! decodes that do not fit wait, in the order they asked. One model, or models whose threads
//! fit the machine together, never wait.

use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};

struct Cores {
    total: usize,
    state: Mutex<State>,
    changed: Condvar,
}

struct State {
    free: usize,
    /// Tickets in asking order: only the oldest waiting decode may take cores.
    next_ticket: u64,
    serving: u64,
}

/// Cores held by one decode, given back on drop.
pub(crate) struct CoreShare {
    taken: usize,
}

fn cores() -> &'static Cores {
    static CORES: OnceLock<Cores> = OnceLock::new();
    CORES.get_or_init(|| {
        let total = std::thread::available_parallelism().map_or(1, |n| n.get());
        Cores { total, state: Mutex::new(State { free: total, next_ticket: 0, serving: 0 }), changed: Condvar::new() }
    })
}

fn lock(cores: &Cores) -> MutexGuard<'_, State> {
    // The state stays consistent under every lock (plain counters), so a poisoned lock is usable.
    cores.state.lock().unwrap_or_else(|e| e.into_inner())
}

/// Waits until `threads` cores (all of them at most) are free, and takes them.
pub(crate) fn take(threads: usize) -> CoreShare {
    let cores = cores();
    let wanted = threads.clamp(1, cores.total);
    let mut state = lock(cores);
    let ticket = state.next_ticket;
    state.next_ticket += 1;
    while state.serving != ticket || state.free < wanted {
        state = cores.changed.wait(state).unwrap_or_else(|e| e.into_inner());
    }
    state.serving += 1;
    state.free -= wanted;
    // The next ticket may fit in what is left.
    cores.changed.notify_all();
    CoreShare { taken: wanted }
}

impl Drop for CoreShare {
    fn drop(&mut self) {
        let cores = cores();
        lock(cores).free += self.taken;
        cores.changed.notify_all();
    }
}
