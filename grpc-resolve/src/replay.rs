//! A request body that can be sent again.
//!
//! tonic hands the channel a request whose body is a stream, consumed as it is sent, so a
//! failed attempt cannot simply be repeated. This wrapper keeps a copy of every frame it
//! passes on, up to a cap, and keeps the unread rest of the original body in shared state
//! rather than inside the attempt: once an attempt is finished with the body (hyper dropped
//! it, or the whole body was read), a second attempt replays the copied frames and then
//! goes on reading the original. Nothing is buffered ahead of the network, so streaming
//! requests stream as before; a request larger than the cap simply cannot be retried. The
//! idea is linkerd2-proxy's `ReplayBody`.
//!
//! May use: nothing else of the crate. It sits below both the pool, whose connections send
//! it, and the channel, whose retries replay it.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body as HttpBody, Frame};
use tokio::sync::Notify;
use tonic::body::Body;

/// How many request bytes a call keeps to be able to send them again.
pub(crate) const MAX_REPLAY_BYTES: usize = 64 * 1024;

/// One attempt's view of the request body.
pub(crate) struct ReplayBody {
    shared: Arc<Inner>,
    /// The next copied frame this attempt has not sent yet.
    next: usize,
}

/// What decides whether, and lets, a request body be sent again.
#[derive(Clone)]
pub(crate) struct Replay {
    shared: Arc<Inner>,
}

struct Inner {
    state: Mutex<Shared>,
    /// Woken when an attempt lets go of the body or the body ends.
    released: Notify,
}

struct Shared {
    rest: Body,
    copies: Vec<Copy>,
    copied: usize,
    cap: usize,
    /// Too big to copy, or the body failed: no replay.
    spoiled: bool,
    ended: bool,
    /// Attempts still holding a body.
    readers: usize,
}

enum Copy {
    Data(Bytes),
    Trailers(HeaderMap),
}

fn lock(shared: &Inner) -> MutexGuard<'_, Shared> {
    shared.state.lock().unwrap_or_else(PoisonError::into_inner)
}

// === impl ReplayBody ===

impl ReplayBody {
    /// Wraps a request body, keeping up to `cap` bytes for a replay.
    pub(crate) fn new(body: Body, cap: usize) -> (ReplayBody, Replay) {
        let shared = Arc::new(Inner {
            state: Mutex::new(Shared {
                rest: body,
                copies: Vec::new(),
                copied: 0,
                cap,
                spoiled: false,
                ended: false,
                readers: 1,
            }),
            released: Notify::new(),
        });
        (
            ReplayBody {
                shared: shared.clone(),
                next: 0,
            },
            Replay { shared },
        )
    }
}

impl HttpBody for ReplayBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let this = &mut *self;
        let mut shared = lock(&this.shared);
        if let Some(copy) = shared.copies.get(this.next) {
            let frame = match copy {
                Copy::Data(data) => Frame::data(data.clone()),
                Copy::Trailers(trailers) => Frame::trailers(trailers.clone()),
            };
            this.next += 1;
            return Poll::Ready(Some(Ok(frame)));
        }
        if shared.ended {
            return Poll::Ready(None);
        }
        let polled = Pin::new(&mut shared.rest).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                let size = frame.data_ref().map_or(0, Bytes::len);
                if shared.spoiled || shared.copied + size > shared.cap {
                    shared.spoiled = true;
                    shared.copies = Vec::new();
                } else if let Some(data) = frame.data_ref() {
                    shared.copied += size;
                    shared.copies.push(Copy::Data(data.clone()));
                } else if let Some(trailers) = frame.trailers_ref() {
                    shared.copies.push(Copy::Trailers(trailers.clone()));
                }
                this.next = shared.copies.len();
            }
            Poll::Ready(Some(Err(_))) => shared.spoiled = true,
            Poll::Ready(None) => {
                shared.ended = true;
                drop(shared);
                this.shared.released.notify_waiters();
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        let shared = lock(&self.shared);
        self.next >= shared.copies.len() && (shared.ended || shared.rest.is_end_stream())
    }
}

impl Drop for ReplayBody {
    fn drop(&mut self) {
        lock(&self.shared).readers -= 1;
        self.shared.released.notify_waiters();
    }
}

// === impl Replay ===

impl Replay {
    /// A body for another attempt, if the request can be sent again now, without waiting:
    /// for a hedge, which runs beside an attempt that may still hold the body, so only a
    /// request read whole (or one the other attempt let go of) can go.
    pub(crate) fn replay(&self) -> Option<ReplayBody> {
        self.try_replay().ok().flatten()
    }

    /// A body for another attempt, if the request can be sent again: it was small enough
    /// to copy, and the previous attempt is done with it (so two attempts never read the
    /// original at once). Waits while the previous attempt still holds the body.
    ///
    /// A server may answer before the client has sent (or hyper has dropped) the request
    /// body; hyper lets go of it as soon as the stream is closed, which comes right after
    /// such an answer. The caller bounds the wait.
    pub(crate) async fn replay_when_released(&self) -> Option<ReplayBody> {
        loop {
            let released = self.shared.released.notified();
            let mut released = std::pin::pin!(released);
            // Registered before looking, so a release between the look and the wait counts.
            released.as_mut().enable();
            match self.try_replay() {
                Ok(Some(body)) => return Some(body),
                Err(Spoiled) => return None,
                Ok(None) => released.await,
            }
        }
    }

    /// `Ok(None)` while another attempt still holds the body.
    fn try_replay(&self) -> Result<Option<ReplayBody>, Spoiled> {
        let mut shared = lock(&self.shared);
        if shared.spoiled {
            return Err(Spoiled);
        }
        let read_whole = shared.ended || shared.rest.is_end_stream();
        if !(read_whole || shared.readers == 0) {
            return Ok(None);
        }
        shared.readers += 1;
        Ok(Some(ReplayBody {
            shared: self.shared.clone(),
            next: 0,
        }))
    }
}

/// The body cannot be sent again: too big to copy, or it failed.
struct Spoiled;

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn body(chunks: &[&'static str]) -> Body {
        let frames: Vec<Result<Frame<Bytes>, tonic::Status>> = chunks
            .iter()
            .map(|c| Ok(Frame::data(Bytes::from_static(c.as_bytes()))))
            .collect();
        Body::new(http_body_util::StreamBody::new(futures_util::stream::iter(
            frames,
        )))
    }

    async fn read(body: ReplayBody) -> Vec<u8> {
        body.collect()
            .await
            .expect("the body reads")
            .to_bytes()
            .to_vec()
    }

    #[tokio::test]
    async fn a_fully_read_body_replays_whole() {
        let (first, replay) = ReplayBody::new(body(&["ab", "cd"]), 1024);
        assert_eq!(read(first).await, b"abcd", "the first attempt reads it all");
        let second = replay
            .replay()
            .expect("a small body that was read can replay");
        assert_eq!(read(second).await, b"abcd", "the replay has the same bytes");
    }

    #[tokio::test]
    async fn a_dropped_attempt_hands_over_the_rest() {
        let (mut first, replay) = ReplayBody::new(body(&["ab", "cd", "ef"]), 1024);
        let frame = first.frame().await.expect("a frame").expect("no error");
        assert_eq!(frame.into_data().expect("data"), "ab", "the first chunk");
        assert!(
            replay.replay().is_none(),
            "no replay while the first attempt still reads"
        );
        drop(first);
        let second = replay.replay().expect("the first attempt is gone");
        assert_eq!(
            read(second).await,
            b"abcdef",
            "copied frames, then the unread rest"
        );
    }

    #[tokio::test]
    async fn a_body_over_the_cap_does_not_replay() {
        let (first, replay) = ReplayBody::new(body(&["abc", "def"]), 4);
        assert_eq!(
            read(first).await,
            b"abcdef",
            "the first attempt is unaffected"
        );
        assert!(replay.replay().is_none(), "6 bytes exceed the 4-byte cap");
    }

    #[tokio::test]
    async fn an_unread_body_replays() {
        let (first, replay) = ReplayBody::new(body(&["xy"]), 1024);
        drop(first);
        let second = replay
            .replay()
            .expect("nothing was read, so it can go again");
        assert_eq!(read(second).await, b"xy", "the whole body");
    }
}
