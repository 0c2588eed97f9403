//! Tests of `POST /v1/responses` in-process through `Proxy::service`, with the fake Qwen as the
//! upstream: whole answers, streams (event order, sequence numbers, usage), tool-call round
//! trips, refusals and upstream errors. No sleeps and no timing assertions.

mod stream;
mod whole;
