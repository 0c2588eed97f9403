//! Why an upstream stream broke off ([`StreamError`]). A passed-through body ends with it, so
//! hyper aborts the response; a translated body turns it into its API's error event.

use std::time::Duration;

/// Why a streamed answer was aborted before its end.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The upstream connection broke or sent bad framing.
    #[error("the upstream stream broke off: {0}")]
    Upstream(#[source] hyper::Error),
    /// The upstream's stream ended with its connection in the middle of a line: it was cut off.
    #[error("the upstream stream ended in the middle of an event, so it was cut off")]
    Cut,
    /// The upstream sent nothing for too long.
    #[error("the upstream sent nothing for {} s, so the stream was aborted", .0.as_secs())]
    Idle(Duration),
    /// The upstream sent a server-sent-events line longer than the proxy accepts.
    #[error("the upstream sent an event line longer than {0} bytes, so the stream was aborted")]
    LineTooLong(usize),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// api-translate's golden fixtures quote this text in a broken Responses stream.
    #[test]
    fn the_idle_timeout_says_how_long_the_upstream_was_silent() {
        assert_eq!(
            StreamError::Idle(Duration::from_secs(30)).to_string(),
            "the upstream sent nothing for 30 s, so the stream was aborted"
        );
    }
}
