//! Counting a task's wakes, for tests that check that a future or a stream does not wake its own
//! task while it is being polled: on tokio's multi-threaded runtime such a wake queues the task
//! again and wakes another worker thread to take it, for nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Wake, Waker};

/// A waker that counts its wakes: those made while the task polls (inside [`WakeCount::poll`])
/// and all the others.
#[derive(Default)]
pub struct WakeCount {
    polling: AtomicBool,
    during_poll: AtomicUsize,
    other: AtomicUsize,
}

impl WakeCount {
    /// Runs `poll` as the task's poll, with this waker in its context.
    pub fn poll<T>(self: &Arc<Self>, poll: impl FnOnce(&mut Context<'_>) -> T) -> T {
        let waker = Waker::from(self.clone());
        let mut cx = Context::from_waker(&waker);
        self.polling.store(true, Ordering::SeqCst);
        let out = poll(&mut cx);
        self.polling.store(false, Ordering::SeqCst);
        out
    }

    /// Wakes made while the task polled.
    pub fn during_poll(&self) -> usize {
        self.during_poll.load(Ordering::SeqCst)
    }

    /// Wakes made from elsewhere.
    pub fn other(&self) -> usize {
        self.other.load(Ordering::SeqCst)
    }
}

impl Wake for WakeCount {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.polling.load(Ordering::SeqCst) {
            self.during_poll.fetch_add(1, Ordering::SeqCst);
        } else {
            self.other.fetch_add(1, Ordering::SeqCst);
        }
    }
}
