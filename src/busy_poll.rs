//! Optional busy polling (`limits.busy_poll`): after a request arrives, goes upstream or is
//! answered by it, the worker keeps polling for I/O for a while instead of going to sleep.
//!
//! On a virtual machine a halted vCPU can take a hundred microseconds or more to wake; a
//! proxy that sleeps between a request and its upstream's answer pays that twice per
//! request at light load. A spinner task keeps the runtime busy: it yields in a loop, and a
//! runtime with a yielded task polls its I/O driver without blocking instead of parking. It
//! spins only within `window` of the last activity and sleeps otherwise, so an idle proxy
//! uses no CPU. HAProxy's `busy-polling` and Seastar's idle polling do the same.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

pub struct BusyPoll {
    window_ns: u64,
    epoch: Instant,
    /// Spin until this many nanoseconds after `epoch` (the last activity plus the window).
    until: AtomicU64,
    /// A spinner is asleep (or about to be) and must be woken by the next activity.
    asleep: AtomicBool,
    wake: Notify,
    /// Polls made while spinning.
    spins: AtomicU64,
}

impl BusyPoll {
    /// Starts `spinners` spinner tasks (one per runtime worker) on the current runtime.
    pub fn start(window: Duration, spinners: usize) -> Arc<BusyPoll> {
        let bp = Arc::new(BusyPoll {
            window_ns: u64::try_from(window.as_nanos()).unwrap_or(u64::MAX),
            epoch: Instant::now(),
            until: AtomicU64::new(0),
            asleep: AtomicBool::new(false),
            wake: Notify::new(),
            spins: AtomicU64::new(0),
        });
        for _ in 0..spinners.max(1) {
            tokio::spawn(spin(bp.clone()));
        }
        bp
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Something happened: poll for the next event for `window` before sleeping.
    pub fn touch(&self) {
        let until = self.now_ns().saturating_add(self.window_ns);
        self.until.store(until, Ordering::SeqCst);
        if self.asleep.swap(false, Ordering::SeqCst) {
            self.wake.notify_waiters();
        }
    }

    /// How many times a spinner has polled (it counts while spinning, not while asleep).
    pub fn spins(&self) -> u64 {
        self.spins.load(Ordering::Relaxed)
    }

    fn idle(&self) -> bool {
        self.now_ns() >= self.until.load(Ordering::SeqCst)
    }
}

async fn spin(bp: Arc<BusyPoll>) {
    loop {
        // Registered before the flag is raised and the clock read: a `touch` in between
        // either is seen by `idle` or finds the flag and wakes this future.
        let woken = bp.wake.notified();
        bp.asleep.store(true, Ordering::SeqCst);
        if bp.idle() {
            woken.await;
        }
        while !bp.idle() {
            bp.spins.fetch_add(1, Ordering::Relaxed);
            tokio::task::yield_now().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spins after a touch, for about the window, then sleeps until the next touch; other
    /// tasks on the same single-threaded runtime keep running meanwhile.
    #[tokio::test(flavor = "current_thread")]
    async fn spins_within_the_window_and_sleeps_outside_it() {
        let bp = BusyPoll::start(Duration::from_millis(30), 1);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(bp.spins(), 0, "no activity yet");

        bp.touch();
        let ticker = tokio::spawn(async {
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
        ticker.await.unwrap();
        assert!(bp.spins() > 0, "spinning after a touch");

        // Well past the window: asleep, the count stands still.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let settled = bp.spins();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(bp.spins(), settled, "still spinning long after the window");

        bp.touch();
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(bp.spins() > settled, "a touch wakes the sleeping spinner");
    }
}
