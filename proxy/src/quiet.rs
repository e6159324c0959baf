//! A stream whose wakes of its own task, made while the task polls it, are taken as "poll me
//! again" at once instead of a wake of the task.
//!
//! Why: `FuturesUnordered` wakes its task whenever it has polled all its futures and none was
//! ready (to let other tasks run), and a `Shared` future that completes wakes every waiter, the
//! one polling it too. On tokio's multi-threaded runtime a task woken while it runs is queued
//! behind the others and a parked worker is woken to take it: at one query at a time that is a
//! wake-up of the other worker thread for nothing, twice per query (the request's first poll,
//! and its answer), and the context switches dominate the cost of such a query.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use futures::Stream;

/// How many times a stream that woke itself is polled again before the wake is passed on (the
/// stream may want to yield for real: its futures keep waking themselves).
const REPOLLS: usize = 2;

/// `inner`, with the wakes of its own task made during a poll turned into polls again.
pub struct QuietWakes<S> {
    inner: S,
    hook: Arc<Hook>,
}

#[derive(Default)]
struct Hook {
    /// Whether the task is inside `poll_next` of the stream.
    polling: AtomicBool,
    /// Whether a wake came while it was.
    woken: AtomicBool,
    /// The task's own waker, for wakes from outside a poll.
    task: Mutex<Option<Waker>>,
}

impl Wake for Hook {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.polling.load(Ordering::SeqCst) {
            self.woken.store(true, Ordering::SeqCst);
            // Still polling: the poller sees `woken` after the poll. Else it may have looked
            // already: wake the task (at worst one wake too many).
            if self.polling.load(Ordering::SeqCst) {
                return;
            }
        }
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(waker) = task.as_ref() {
            waker.wake_by_ref();
        }
    }
}

impl<S> QuietWakes<S> {
    pub fn new(inner: S) -> Self {
        QuietWakes {
            inner,
            hook: Arc::default(),
        }
    }
}

impl<S> std::ops::Deref for QuietWakes<S> {
    type Target = S;
    fn deref(&self) -> &S {
        &self.inner
    }
}

impl<S> std::ops::DerefMut for QuietWakes<S> {
    fn deref_mut(&mut self) -> &mut S {
        &mut self.inner
    }
}

impl<S: Stream + Unpin> Stream for QuietWakes<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        {
            let mut task = self.hook.task.lock().unwrap_or_else(|p| p.into_inner());
            if !task.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *task = Some(cx.waker().clone());
            }
        }
        let waker = Waker::from(self.hook.clone());
        let mut inner_cx = Context::from_waker(&waker);
        for _ in 0..=REPOLLS {
            self.hook.woken.store(false, Ordering::SeqCst);
            self.hook.polling.store(true, Ordering::SeqCst);
            let poll = Pin::new(&mut self.inner).poll_next(&mut inner_cx);
            self.hook.polling.store(false, Ordering::SeqCst);
            if poll.is_ready() {
                // No wake is owed after an item: whoever takes it polls again for the next.
                return poll;
            }
            if !self.hook.woken.swap(false, Ordering::SeqCst) {
                return Poll::Pending;
            }
        }
        // Still waking itself: a real yield.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::stream::{FuturesUnordered, StreamExt};
    use metaproxy_tests::wakes::WakeCount as Count;
    use std::sync::atomic::AtomicUsize;

    fn poll<S: Stream + Unpin>(stream: &mut S, count: &Arc<Count>) -> Poll<Option<S::Item>> {
        count.poll(|cx| stream.poll_next_unpin(cx))
    }

    #[test]
    fn the_wake_futures_unordered_makes_after_polling_everything_is_not_passed_on() {
        let (tx, rx) = futures::channel::oneshot::channel::<u32>();
        let mut plain = FuturesUnordered::new();
        let (tx2, rx2) = futures::channel::oneshot::channel::<u32>();
        plain.push(rx2);
        let count = Arc::new(Count::default());
        assert!(poll(&mut plain, &count).is_pending());
        assert_eq!(
            count.during_poll(),
            1,
            "FuturesUnordered wakes its task while polled (why this exists)"
        );
        drop(tx2);

        let mut quiet = QuietWakes::new(FuturesUnordered::new());
        quiet.push(rx);
        let count = Arc::new(Count::default());
        assert!(poll(&mut quiet, &count).is_pending());
        assert_eq!(count.during_poll(), 0);
        assert_eq!(count.other(), 0);
        // A wake from outside a poll reaches the task.
        tx.send(7).expect("receiver");
        assert_eq!(count.other(), 1);
        assert_eq!(poll(&mut quiet, &count), Poll::Ready(Some(Ok(7))));
        assert_eq!(count.during_poll(), 0);
    }

    #[test]
    fn a_stream_that_keeps_waking_itself_still_yields() {
        let polls = Arc::new(AtomicUsize::new(0));
        let counted = polls.clone();
        let mut quiet = QuietWakes::new(futures::stream::poll_fn(move |cx| {
            counted.fetch_add(1, Ordering::SeqCst);
            cx.waker().wake_by_ref();
            Poll::<Option<()>>::Pending
        }));
        let count = Arc::new(Count::default());
        assert!(poll(&mut quiet, &count).is_pending());
        assert_eq!(
            polls.load(Ordering::SeqCst),
            REPOLLS + 1,
            "polled again, a bounded number of times"
        );
        assert_eq!(
            count.during_poll(),
            1,
            "then the wake is passed on: a real yield"
        );
    }

    #[test]
    fn a_wake_during_a_poll_that_gives_an_item_is_not_passed_on() {
        // The consumer polls again for the next item anyway (the stream contract).
        let mut quiet = QuietWakes::new(futures::stream::poll_fn(|cx| {
            cx.waker().wake_by_ref();
            Poll::Ready(Some(1))
        }));
        let count = Arc::new(Count::default());
        assert_eq!(poll(&mut quiet, &count), Poll::Ready(Some(1)));
        assert_eq!(count.during_poll(), 0);
    }
}
