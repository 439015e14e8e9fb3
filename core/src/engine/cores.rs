//! The machine's cores, shared by the decodes of every model in the process.
//!
//! A decode runs ggml's threads for its duration, and they spin at every operation's barrier.
//! Two decodes that together run more threads than there are cores therefore wait out each
//! other's time slices at every barrier: two models generating at once on a 2-core machine ran
//! about 7 times slower than the same work one after the other (35 times with other load). So a
//! decode first takes as many cores as it runs threads (all of them at most); decodes that do not
//! fit wait, in the order they asked. One model, or models whose threads fit the machine
//! together, never wait. An engine keeps its share after the decode, while it samples and hands
//! out tokens, until it asks for its next decode or waits for work: with the share given back at
//! the end of the decode, the other model's decode ran beside that work, one thread too many,
//! and two models at once still took 3 times as long as one after the other (now about as long).
//! On Linux, decodes that take every core also take turns with other processes' (machine.rs).

use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};

#[cfg(target_os = "linux")]
mod machine;
#[cfg(target_os = "linux")]
use machine::MachineLock;

/// Elsewhere the budget is the process's alone.
#[cfg(not(target_os = "linux"))]
struct MachineLock;

#[cfg(not(target_os = "linux"))]
impl MachineLock {
    fn for_this_machine(_cores: usize) -> Option<MachineLock> {
        None
    }
    fn acquire(&self) -> bool {
        false
    }
    fn release(&self) {}
}

/// A budget of cores; the process has one (`take`), tests make their own.
struct Cores {
    total: usize,
    state: Mutex<State>,
    changed: Condvar,
    /// Shared with other processes on the same CPUs (machine.rs); None: this process's alone.
    machine: Option<MachineLock>,
}

struct State {
    free: usize,
    /// Tickets in asking order: only the oldest waiting decode may take cores.
    next_ticket: u64,
    serving: u64,
}

/// Cores taken for a decode, given back on drop (an engine holds them until its next decode or
/// until it waits for work).
pub(crate) struct CoreShare<'a> {
    cores: &'a Cores,
    taken: usize,
    /// Holds the lock shared with other processes (a share of every core: alone in the process).
    holds_machine: bool,
}

impl Cores {
    fn new(total: usize, machine: Option<MachineLock>) -> Cores {
        let state = State { free: total, next_ticket: 0, serving: 0 };
        Cores { total, state: Mutex::new(state), changed: Condvar::new(), machine }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent under every lock (plain counters), so a poisoned lock is usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take(&self, threads: usize) -> CoreShare<'_> {
        let wanted = threads.clamp(1, self.total);
        let mut state = self.lock();
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        while state.serving != ticket || state.free < wanted {
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        state.serving += 1;
        state.free -= wanted;
        // The next ticket may fit in what is left.
        self.changed.notify_all();
        drop(state);
        let mut share = CoreShare { cores: self, taken: wanted, holds_machine: false };
        // Only a decode that takes every core can stall another process's (one that leaves cores
        // free fits beside a like one: two processes with 1 thread each on 2 cores). Such a
        // share is alone in the process, so it holds the machine lock itself.
        if let Some(machine) = self.machine.as_ref().filter(|_| wanted == self.total) {
            share.holds_machine = machine.acquire();
        }
        share
    }
}

/// Waits until `threads` cores (all of them at most) are free, and takes them.
pub(crate) fn take(threads: usize) -> CoreShare<'static> {
    static CORES: OnceLock<Cores> = OnceLock::new();
    CORES
        .get_or_init(|| {
            let total = std::thread::available_parallelism().map_or(1, |n| n.get());
            Cores::new(total, MachineLock::for_this_machine(total))
        })
        .take(threads)
}

impl Drop for CoreShare<'_> {
    fn drop(&mut self) {
        if let Some(machine) = self.cores.machine.as_ref().filter(|_| self.holds_machine) {
            machine.release();
        }
        self.cores.lock().free += self.taken;
        self.cores.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// Waits until `count` decodes have asked for cores (so each one asking holds its ticket).
    fn wait_for_tickets(cores: &Cores, count: u64) {
        while cores.lock().next_ticket < count {
            std::thread::yield_now();
        }
    }

    #[test]
    fn a_decode_that_does_not_fit_waits_until_cores_are_given_back() {
        let cores = Arc::new(Cores::new(2, None));
        let first = cores.take(2);
        let second_took = Arc::new(AtomicUsize::new(0));
        let second = {
            let (cores, second_took) = (cores.clone(), second_took.clone());
            std::thread::spawn(move || {
                let _share = cores.take(1);
                second_took.store(1, Ordering::SeqCst);
            })
        };
        wait_for_tickets(&cores, 2);
        // No core is free, so the second decode cannot have taken one.
        {
            let state = cores.lock();
            assert_eq!((state.serving, state.free), (1, 0));
        }
        assert_eq!(second_took.load(Ordering::SeqCst), 0);
        drop(first);
        second.join().unwrap();
        assert_eq!(second_took.load(Ordering::SeqCst), 1);
        assert_eq!(cores.lock().free, 2);
    }

    #[test]
    fn waiting_decodes_are_served_in_asking_order_even_when_a_later_one_would_fit() {
        let cores = Arc::new(Cores::new(2, None));
        let held = cores.take(1);
        let order = Arc::new(Mutex::new(vec![]));
        let mut waiters = vec![];
        // "big" wants both cores and must wait for `held`; "small" fits in the free core at
        // once, but asked later, so it waits for "big".
        for (asked, (name, threads)) in [("big", 2), ("small", 1)].into_iter().enumerate() {
            let (shared, order) = (cores.clone(), order.clone());
            waiters.push(std::thread::spawn(move || {
                let _share = shared.take(threads);
                order.lock().unwrap().push(name);
            }));
            wait_for_tickets(&cores, asked as u64 + 2);
        }
        assert!(order.lock().unwrap().is_empty());
        drop(held);
        for waiter in waiters {
            waiter.join().unwrap();
        }
        assert_eq!(*order.lock().unwrap(), ["big", "small"]);
    }

    #[test]
    fn more_threads_than_cores_takes_them_all_and_decodes_that_fit_share() {
        let cores = Cores::new(4, None);
        let all = cores.take(64);
        assert_eq!((all.taken, cores.lock().free), (4, 0));
        drop(all);
        let (a, b) = (cores.take(2), cores.take(0));
        assert_eq!((a.taken, b.taken, cores.lock().free), (2, 1, 1));
    }

    #[test]
    fn cores_in_use_never_exceed_the_machine() {
        let cores = Arc::new(Cores::new(3, None));
        let (in_use, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let workers: Vec<_> = (1..=6)
            .map(|threads| {
                let (cores, in_use, peak) = (cores.clone(), in_use.clone(), peak.clone());
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        let share = cores.take(threads);
                        let now = in_use.fetch_add(share.taken, Ordering::SeqCst) + share.taken;
                        peak.fetch_max(now, Ordering::SeqCst);
                        std::thread::yield_now();
                        in_use.fetch_sub(share.taken, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().unwrap();
        }
        assert!(peak.load(Ordering::SeqCst) <= 3, "peak {}", peak.load(Ordering::SeqCst));
        assert_eq!(cores.lock().free, 3);
    }
    #[cfg(target_os = "linux")]
    #[test]
    fn decodes_that_take_every_core_take_turns_with_other_processes() {
        let path = std::env::temp_dir().join(format!("corral-cores-test-{}-budget.lock", std::process::id()));
        let open = || MachineLock::open(&path, std::time::Duration::from_secs(60)).unwrap();
        let other_process = open();
        let cores = Arc::new(Cores::new(2, Some(open())));
        assert!(other_process.acquire());
        // One core of two: fits beside the other process, no turn to wait for.
        let one = cores.take(1);
        assert!(!one.holds_machine);
        drop(one);
        let took_all = Arc::new(AtomicUsize::new(0));
        let decode = {
            let (cores, took_all) = (cores.clone(), took_all.clone());
            std::thread::spawn(move || {
                let share = cores.take(2);
                assert!(share.holds_machine);
                took_all.store(1, Ordering::SeqCst);
            })
        };
        machine::wait_until(|| other_process.others_waiting());
        assert_eq!(took_all.load(Ordering::SeqCst), 0, "took every core while another process decoded");
        other_process.release();
        decode.join().unwrap();
        // The share gave the machine back when it was dropped.
        assert!(other_process.acquire());
        let _ = std::fs::remove_file(&path);
    }
}
