//! The refresh gate: while on, each refresh request is held after it was received and
//! recorded, until the test releases it, and the test can wait for a held request to arrive
//! and for its answer to leave. Held requests are numbered in arrival order (1, 2, ...), and
//! releases go to them in that order, even to one whose client has gone away.

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::body::{Frame, SizeHint};
use tokio::sync::watch;

use crate::reply::{Body, Cut, Reply};

/// Shared between the [`crate::FakeQwen`] handle and the handlers.
#[derive(Clone)]
pub(crate) struct RefreshGate {
    inner: Arc<Inner>,
}

struct Inner {
    /// How many refresh requests were held so far.
    held: watch::Sender<usize>,
    /// Held requests with a number up to this one may be answered.
    released: watch::Sender<usize>,
    /// The numbers of held requests whose answer was handed to the connection.
    answered: watch::Sender<BTreeSet<usize>>,
    on: std::sync::atomic::AtomicBool,
}

impl RefreshGate {
    pub(crate) fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                held: watch::Sender::new(0),
                released: watch::Sender::new(0),
                answered: watch::Sender::new(BTreeSet::new()),
                on: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }

    pub(crate) fn set_on(&self, on: bool) {
        self.inner.on.store(on, std::sync::atomic::Ordering::SeqCst);
    }

    /// When the gate is on, the number of the request just received; `None` lets it through.
    pub(crate) fn admit(&self) -> Option<usize> {
        if !self.inner.on.load(std::sync::atomic::Ordering::SeqCst) {
            return None;
        }
        let mut ticket = 0;
        self.inner.held.send_modify(|held| {
            *held += 1;
            ticket = *held;
        });
        Some(ticket)
    }

    /// Waits until request `ticket` is released.
    pub(crate) async fn wait_for_release(&self, ticket: usize) {
        let mut released = self.inner.released.subscribe();
        // The sender lives in `self`, so it cannot be gone.
        let _ = released.wait_for(|released| *released >= ticket).await;
    }

    pub(crate) fn release(&self, count: usize) {
        self.inner
            .released
            .send_modify(|released| *released = released.saturating_add(count));
    }

    pub(crate) async fn wait_for_held(&self, count: usize) {
        let mut held = self.inner.held.subscribe();
        let _ = held.wait_for(|held| *held >= count).await;
    }

    pub(crate) async fn wait_for_answered(&self, ticket: usize) {
        let mut answered = self.inner.answered.subscribe();
        let _ = answered
            .wait_for(|answered| answered.contains(&ticket))
            .await;
    }

    /// `reply`, with its body marked answered once the connection is done with it.
    pub(crate) fn track(&self, ticket: usize, reply: Reply) -> Reply {
        let gate = self.clone();
        reply.map(|body| Tracked { body, ticket, gate }.boxed_unsync())
    }
}

/// A body that marks its held request answered when hyper drops it, after writing it.
struct Tracked {
    body: Body,
    ticket: usize,
    gate: RefreshGate,
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = Cut;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Cut>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let ticket = self.ticket;
        self.gate.inner.answered.send_modify(|answered| {
            answered.insert(ticket);
        });
    }
}
