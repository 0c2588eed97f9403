//! Reading a request body whole, within three bounds: its size (`max-body-bytes`, which
//! [`BodyLimit`](crate::layers::body_limit::BodyLimit) enforces), its time
//! (`body-read-timeout`) and the memory of all bodies in flight together
//! (`body-memory-budget`).
//!
//! **Time.** The whole body must arrive within the timeout, counted from when reading starts.
//! A slower one gets 408 with `Connection: close`, so hyper closes the connection instead of
//! waiting for the rest.
//!
//! **Memory.** The budget is split into two pools of permits (one permit per KiB):
//!
//! - *receiving*, a quarter of the budget: before its first byte is read, a body takes its
//!   declared `Content-Length` (a body without one, the largest body allowed), at most the
//!   whole pool, and gives it back once it is read;
//! - *processing*, the rest: once read, a body takes [`processing_cost`], an upper estimate of
//!   what it costs while it is parsed, translated and serialized again, and holds it until the
//!   request has its upstream answer ([`Charge`] is dropped). A body whose estimate is larger
//!   than the whole pool gets 413 `request_too_complex`.
//!
//! Each pool is taken in one step, and a request that holds receiving permits waits only for
//! processing permits, never the other way round, so requests cannot deadlock each other;
//! the tokio semaphore is fair, so a large body is not starved by small ones. Waiting for
//! permits does not count against the read timeout: the client is not the slow one.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::CONNECTION;
use http::{HeaderValue, StatusCode};
use http_body_util::{LengthLimitError, Limited};
use hyper::body::Body;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;

use crate::api_error::{ApiError, INVALID_REQUEST, human_bytes};

/// Bytes per permit.
const PERMIT_BYTES: usize = 1024;
/// Copies of a body's bytes that can be alive at once while it is processed: the bytes as
/// read, the strings of the parsed `Value`, the body as sent and the body as reshaped for
/// Qwen.
const BYTE_COPIES: usize = 4;
/// Memory for each JSON value beyond its text: a `Value` (or a map entry, with its key and
/// hash) in the parsed tree and in the translated one, with room for the growth of the
/// vectors holding them.
const VALUE_COST: usize = 2 * (size_of::<serde_json::Value>() + 56);

/// Upper estimate, in bytes, of the memory a JSON body of these bytes takes while it is
/// processed: [`BYTE_COPIES`] of its bytes, and [`VALUE_COST`] for each value it can hold
/// (at most one more than its `,`, `:`, `[` and `{` characters, counted even inside strings,
/// which only raises the estimate).
pub(crate) fn processing_cost(body: &[u8]) -> usize {
    // Counted in runs of 255 into u8 lanes, which the compiler turns into vector code.
    let separators: usize = body
        .chunks(255)
        .map(|run| {
            let in_run = run
                .iter()
                .map(|&byte| u8::from(matches!(byte, b',' | b':' | b'[' | b'{')))
                .fold(0_u8, u8::wrapping_add);
            usize::from(in_run)
        })
        .sum();
    body.len()
        .saturating_mul(BYTE_COPIES)
        .saturating_add((separators + 1).saturating_mul(VALUE_COST))
}

/// A request body as read, and its share of the processing pool.
#[derive(Debug)]
pub(crate) struct ReadBody {
    pub(crate) bytes: Bytes,
    /// Keep it until the request is done with the body (its upstream answer arrived).
    pub(crate) charge: Charge,
}

/// A body's share of the memory budget, given back on drop.
#[derive(Debug)]
pub(crate) struct Charge(
    #[allow(dead_code, reason = "held for its drop")] Option<OwnedSemaphorePermit>,
);

/// The bounds every body is read within, shared by all requests.
#[derive(Debug)]
pub(crate) struct BodyReader {
    max_bytes: usize,
    timeout: Duration,
    budget: usize,
    receiving: Pool,
    processing: Pool,
}

#[derive(Debug)]
struct Pool {
    permits: Arc<Semaphore>,
    size: u32,
}

impl Pool {
    fn new(bytes: usize) -> Self {
        let size = u32::try_from(bytes / PERMIT_BYTES)
            .unwrap_or(u32::MAX)
            .clamp(1, u32::try_from(Semaphore::MAX_PERMITS).unwrap_or(u32::MAX));
        Self {
            permits: Arc::new(Semaphore::new(size as usize)),
            size,
        }
    }

    /// Waits for `permits` (at least 1) of this pool.
    async fn take(&self, permits: u32) -> OwnedSemaphorePermit {
        Arc::clone(&self.permits)
            .acquire_many_owned(permits.clamp(1, self.size))
            .await
            .expect("the pool's semaphore is never closed")
    }

    /// Permits free now (for tests).
    #[cfg(test)]
    fn available(&self) -> usize {
        self.permits.available_permits()
    }
}

/// Permits for `bytes`, rounded up.
fn permits_for(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(PERMIT_BYTES)).unwrap_or(u32::MAX)
}

impl BodyReader {
    /// Bodies of at most `max_bytes`, each read within `timeout`, all within `budget` bytes.
    pub(crate) fn new(max_bytes: usize, timeout: Duration, budget: usize) -> Self {
        let receiving = budget / 4;
        Self {
            max_bytes,
            timeout,
            budget,
            receiving: Pool::new(receiving),
            processing: Pool::new(budget - receiving),
        }
    }

    /// Reads a request's `body` whole (limited to `max_bytes` by
    /// [`BodyLimit`](crate::layers::body_limit::BodyLimit)) and takes its processing share.
    ///
    /// # Errors
    ///
    /// 413 past the size limit or when its processing would not fit in the budget, 408 when
    /// it does not arrive in time, 400 when the client's body broke off.
    pub(crate) async fn read<B>(&self, body: Limited<B>) -> Result<ReadBody, ApiError>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if body.is_end_stream() {
            return Ok(ReadBody {
                bytes: Bytes::new(),
                charge: Charge(None),
            });
        }
        // Its `Content-Length` (hyper's exact size hint), else as much as may come.
        let declared = body
            .size_hint()
            .exact()
            .and_then(|exact| usize::try_from(exact).ok())
            .map(|exact| exact.min(self.max_bytes));
        let receiving = self
            .receiving
            .take(permits_for(declared.unwrap_or(self.max_bytes)))
            .await;
        let bytes = self.receive(body, declared.unwrap_or(0)).await?;
        let cost = processing_cost(&bytes);
        let permits = permits_for(cost);
        if permits > self.processing.size {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                INVALID_REQUEST,
                "request_too_complex",
                format!(
                    "processing this request would take up to {} of memory, more than the \
                     proxy's `body-memory-budget` of {} allows (bodies with many small JSON \
                     values cost the most); send a smaller request, or raise \
                     `body-memory-budget` in the proxy's config",
                    human_bytes(cost),
                    human_bytes(self.budget)
                ),
            ));
        }
        let processing = self.processing.take(permits).await;
        drop(receiving);
        Ok(ReadBody {
            bytes,
            charge: Charge(Some(processing)),
        })
    }

    /// The body's bytes, read within the timeout; `expected` is its declared size, if any.
    async fn receive<B>(&self, body: Limited<B>, expected: usize) -> Result<Bytes, ApiError>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut body = std::pin::pin!(body);
        // Made on the first wait only: a body already here (most small ones) needs no timer.
        let mut timer: Option<Pin<Box<Sleep>>> = None;
        // One frame (the usual case for a small body) is kept as it is, without a copy.
        let mut first: Option<Bytes> = None;
        let mut whole: Option<BytesMut> = None;
        loop {
            let next = std::future::poll_fn(|cx| {
                if let Poll::Ready(frame) = body.as_mut().poll_frame(cx) {
                    return Poll::Ready(Ok(frame));
                }
                let timer =
                    timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(())),
                    Poll::Pending => Poll::Pending,
                }
            });
            let frame = match next.await {
                Err(()) => return Err(timed_out(self.timeout)),
                Ok(None) => break,
                Ok(Some(Err(error))) if error.is::<LengthLimitError>() => {
                    return Err(ApiError::body_too_large(self.max_bytes));
                }
                Ok(Some(Err(error))) => {
                    return Err(ApiError::bad_request(
                        "body_read_failed",
                        format!(
                            "the request body could not be read ({error}); send the request \
                             again"
                        ),
                    ));
                }
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            match (&mut whole, first.take()) {
                (Some(whole), _) => whole.extend_from_slice(&data),
                (None, None) => first = Some(data),
                (None, Some(earlier)) => {
                    let mut joined =
                        BytesMut::with_capacity(expected.max(earlier.len() + data.len()));
                    joined.extend_from_slice(&earlier);
                    joined.extend_from_slice(&data);
                    whole = Some(joined);
                }
            }
        }
        Ok(whole.map_or_else(|| first.unwrap_or_default(), BytesMut::freeze))
    }
}

/// 408 for a body that did not arrive within `timeout`; the connection is closed after it.
fn timed_out(timeout: Duration) -> ApiError {
    ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        INVALID_REQUEST,
        "request_timeout",
        format!(
            "the request body did not arrive within {} (`body-read-timeout`); check the \
             client's network, or raise `body-read-timeout` in the proxy's config",
            human_duration(timeout)
        ),
    )
    .with_header(CONNECTION, HeaderValue::from_static("close"))
}

/// Whole seconds when exact, else milliseconds.
fn human_duration(duration: Duration) -> String {
    if duration.subsec_millis() == 0 {
        format!("{} s", duration.as_secs())
    } else {
        format!("{} ms", duration.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use std::task::Context;

    use http_body_util::Full;
    use hyper::body::Frame;

    use super::*;

    const MIB: usize = 1024 * 1024;

    /// A request's `body`, limited to `max` bytes as `BodyLimit` does.
    fn request<B>(body: B, max: usize) -> Limited<B> {
        Limited::new(body, max)
    }

    /// A body that sends `sent` and then nothing, ever: a client that trickles and stops.
    struct Stalled {
        sent: Option<Bytes>,
    }

    impl Body for Stalled {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            match self.sent.take() {
                Some(bytes) => Poll::Ready(Some(Ok(Frame::data(bytes)))),
                None => Poll::Pending,
            }
        }
    }

    #[test]
    fn the_estimate_grows_with_the_values_a_body_holds() {
        let text = format!(r#"{{"content":"{}"}}"#, "a".repeat(10_000));
        let numbers = format!("[{}0]", "0,".repeat(5_000));
        assert!(processing_cost(text.as_bytes()) >= BYTE_COPIES * text.len());
        assert!(processing_cost(text.as_bytes()) < 5 * text.len());
        // Half as many bytes, but one value per two of them: a `Value` each, and more.
        assert!(processing_cost(numbers.as_bytes()) >= 5_001 * size_of::<serde_json::Value>());
        assert!(processing_cost(numbers.as_bytes()) > 10 * processing_cost(text.as_bytes()) / 2);
        // Every 255-byte run is counted, the last short one included.
        let commas = ",".repeat(1000);
        assert_eq!(
            processing_cost(commas.as_bytes()),
            BYTE_COPIES * 1000 + 1001 * VALUE_COST
        );
    }

    #[tokio::test]
    async fn a_body_is_read_and_its_charge_held_until_dropped() {
        let reader = BodyReader::new(MIB, Duration::from_secs(5), 8 * MIB);
        let body = Bytes::from_static(br#"{"model":"m","messages":[]}"#);
        let read = reader
            .read(request(Full::new(body.clone()), MIB))
            .await
            .expect("read");
        assert_eq!(read.bytes, body);
        let charged = reader.processing.size as usize - reader.processing.available();
        assert_eq!(charged, permits_for(processing_cost(&body)) as usize);
        assert_eq!(
            reader.receiving.available(),
            reader.receiving.size as usize,
            "the receiving share is given back once read"
        );
        drop(read);
        assert_eq!(
            reader.processing.available(),
            reader.processing.size as usize
        );
    }

    /// A body sent in several frames.
    struct Frames(std::collections::VecDeque<Bytes>);

    impl Body for Frames {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(self.0.pop_front().map(|bytes| Ok(Frame::data(bytes))))
        }
    }

    #[tokio::test]
    async fn bodies_in_many_frames_are_joined() {
        let reader = BodyReader::new(MIB, Duration::from_secs(5), 8 * MIB);
        let frames = Frames(["{\"a\":", "\"b\"", "}"].map(Bytes::from).into());
        let read = reader.read(request(frames, MIB)).await.expect("read");
        assert_eq!(read.bytes, "{\"a\":\"b\"}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stops_arriving_times_out_with_408_and_close() {
        let reader = BodyReader::new(MIB, Duration::from_secs(60), 8 * MIB);
        let stalled = Stalled {
            sent: Some(Bytes::from_static(b"{\"model\":")),
        };
        let error = reader
            .read(request(stalled, MIB))
            .await
            .expect_err("it never ends");
        assert_eq!(error.status, StatusCode::REQUEST_TIMEOUT);
        assert!(error.message.contains("60 s"), "{}", error.message);
        assert!(
            error.message.contains("body-read-timeout"),
            "{}",
            error.message
        );
        assert_eq!(
            error.header,
            Some(Box::new((CONNECTION, HeaderValue::from_static("close"))))
        );
        assert_eq!(reader.receiving.available(), reader.receiving.size as usize);
    }

    #[tokio::test]
    async fn a_body_too_costly_for_the_whole_budget_is_refused() {
        let reader = BodyReader::new(MIB, Duration::from_secs(5), 4 * MIB);
        let numbers = Bytes::from(format!("[{}0]", "0,".repeat(100_000)));
        let error = reader
            .read(request(Full::new(numbers), MIB))
            .await
            .expect_err("too costly");
        assert_eq!(error.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(error.code, "request_too_complex");
        assert!(
            error.message.contains("body-memory-budget"),
            "{}",
            error.message
        );
        assert_eq!(
            reader.processing.available(),
            reader.processing.size as usize
        );
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_413() {
        let reader = BodyReader::new(16, Duration::from_secs(5), 4 * MIB);
        let error = reader
            .read(request(Full::new(Bytes::from(vec![b' '; 64])), 16))
            .await
            .expect_err("too large");
        assert_eq!(error.code, "request_too_large");
    }

    #[tokio::test(start_paused = true)]
    async fn bodies_wait_for_the_budget_without_their_clock_running() {
        // Room for one body of this size at a time in the processing pool.
        let body = Bytes::from(vec![b' '; 512 * 1024]);
        let reader = Arc::new(BodyReader::new(MIB, Duration::from_secs(1), 4 * MIB));
        let first = reader
            .read(request(Full::new(body.clone()), MIB))
            .await
            .expect("the first fits");
        let second = tokio::spawn({
            let (reader, body) = (Arc::clone(&reader), body.clone());
            async move {
                reader
                    .read(request(Full::new(body.clone()), MIB))
                    .await
                    .map(|read| read.bytes.len())
            }
        });
        // Long past the read timeout: waiting for memory is not the client's delay.
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(
            !second.is_finished(),
            "the second waits for the first's share"
        );
        drop(first);
        assert_eq!(second.await.expect("no panic"), Ok(body.len()));
    }
}
