//! The requests a client connection is answering, and their replies as they become ready.
//!
//! Most requests are query_configs for a table whose route is cached, and under load most of
//! them share an upstream call already in flight (nearly all of them, when a client pipelines
//! queries for one table). Such a request takes the fast path: it is joined to its call without a
//! future of its own, and the connection holds one future per distinct call it waits on, with the
//! list of the requests waiting for it. When the call ends, its one wake-up answers them all,
//! each synchronously, in the order they were read. Every other request (route not cached or
//! being loaded, no or invalid record, one-way, any other RPC) takes the slow path: a future of
//! its own, [`Service::handle`].
//!
//! ```text
//!  frame --cached_query--> Ok: joins a call it already waits on (same group and args, not ended)
//!                              or Service::join (the process-wide table) --> one future per call
//!        \--------------> Err(frame): Service::handle, a future per request
//!  call ends --> each request waiting on it answered (Service::answer_query), one reply at a time
//! ```
//!
//! Both ways count the same metrics and give the same replies; a reply leaves as soon as its
//! answer is ready, matched by seqid, in any order. Nothing is allocated for a connection until
//! its first request: an idle connection holds two empty options and an empty list.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::stream::{FuturesUnordered, Stream, StreamExt};
use pegasus_rpc::client::GroupError;
use pegasus_rpc::codec::{ReplyTo, RequestFrame};

use crate::route::Route;
use crate::service::{Reply, Service};
use crate::upstream::{Answer, SharedCall};

type CallResult = Result<Arc<Answer>, GroupError>;

/// What a connection owes: its requests being answered, by either path.
pub(crate) struct Owed<'s, F> {
    service: &'s Service,
    /// Requests on the slow path, a future each; created with the first one.
    slow: Option<FuturesUnordered<F>>,
    /// One future per distinct upstream call the fast-path requests wait on; created with the
    /// first one.
    calls: Option<FuturesUnordered<CallWait>>,
    /// The requests waiting on each of those calls (a handful: one per distinct call).
    waiting: Vec<Waiting>,
    /// A call that ended, with the requests it has not answered yet (the connection takes
    /// replies one at a time and may stop when its write buffer is full).
    ending: Option<Ending>,
    /// Requests read and not yet answered, by both paths: what `max_in_flight` limits.
    requests: usize,
}

/// The requests of one connection waiting on one call.
struct Waiting {
    id: u64,
    /// A handle on the call, never polled (it registers no waker): to see whether it has ended.
    call: SharedCall,
    /// The route of its first request: the call's group (and cluster) is this route's.
    route: Arc<Route>,
    args: Bytes,
    to: Vec<ReplyTo>,
}

struct Ending {
    result: CallResult,
    route: Arc<Route>,
    args: Bytes,
    to: std::vec::IntoIter<ReplyTo>,
}

/// Waits on one call for the connection: one waker in the call, whatever the number of
/// requests waiting.
struct CallWait {
    id: u64,
    call: SharedCall,
}

impl Future for CallWait {
    type Output = (u64, CallResult);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let id = self.id;
        Pin::new(&mut self.call).poll(cx).map(|result| (id, result))
    }
}

impl<'s, F: Future<Output = Reply>> Owed<'s, F> {
    pub(crate) fn new(service: &'s Service) -> Self {
        Owed {
            service,
            slow: None,
            calls: None,
            waiting: Vec::new(),
            ending: None,
            requests: 0,
        }
    }

    /// Requests read and not yet answered.
    pub(crate) fn len(&self) -> usize {
        self.requests
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.requests == 0
    }

    /// Starts answering `frame`: on the fast path when it can, else with `slow(frame)`.
    pub(crate) fn push(&mut self, frame: RequestFrame, slow: impl FnOnce(RequestFrame) -> F) {
        self.requests += 1;
        let query = match self.service.cached_query(frame) {
            Ok(query) => query,
            Err(frame) => {
                self.slow
                    .get_or_insert_with(FuturesUnordered::new)
                    .push(slow(frame));
                return;
            }
        };
        // A call this connection already waits on: no need for the process-wide table (its lock
        // and its hash of the args). A call that has ended is not joined: the table no longer
        // holds it either, and the request gets a call of its own, as it would there.
        if let Some(w) = self.waiting.iter_mut().rev().find(|w| {
            Arc::ptr_eq(&w.route.group, &query.route.group)
                && w.args == query.args
                && w.call.peek().is_none()
        }) {
            w.to.push(query.to);
            self.service.upstreams().count_shared();
            return;
        }
        let joined = self.service.join(&query);
        if let Some(w) = self.waiting.iter_mut().find(|w| w.id == joined.id) {
            w.to.push(query.to);
            return;
        }
        self.calls
            .get_or_insert_with(FuturesUnordered::new)
            .push(CallWait {
                id: joined.id,
                call: joined.call.clone(),
            });
        self.waiting.push(Waiting {
            id: joined.id,
            call: joined.call,
            route: query.route,
            args: query.args,
            to: vec![query.to],
        });
    }

    /// The next reply ready; `None` when nothing is owed.
    fn poll_reply(&mut self, cx: &mut Context<'_>) -> Poll<Option<Reply>> {
        loop {
            if let Some(ending) = &mut self.ending {
                if let Some(to) = ending.to.next() {
                    self.requests -= 1;
                    let reply =
                        self.service
                            .answer_query(&ending.route, &ending.args, &ending.result, to);
                    return Poll::Ready(Some(reply));
                }
                self.ending = None;
            }
            let Some(calls) = self.calls.as_mut() else {
                break;
            };
            let Poll::Ready(Some((id, result))) = calls.poll_next_unpin(cx) else {
                break;
            };
            if let Some(at) = self.waiting.iter().position(|w| w.id == id) {
                let w = self.waiting.swap_remove(at);
                self.ending = Some(Ending {
                    result,
                    route: w.route,
                    args: w.args,
                    to: w.to.into_iter(),
                });
            }
        }
        if let Some(slow) = self.slow.as_mut()
            && let Poll::Ready(Some(reply)) = slow.poll_next_unpin(cx)
        {
            self.requests -= 1;
            return Poll::Ready(Some(reply));
        }
        if self.requests == 0 {
            Poll::Ready(None)
        } else {
            Poll::Pending
        }
    }
}

/// The replies as they become ready; the stream ends (for now) when nothing is owed, and goes on
/// once more requests are pushed.
impl<F: Future<Output = Reply>> Stream for Owed<'_, F> {
    type Item = Reply;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Reply>> {
        self.get_mut().poll_reply(cx)
    }
}
