//! Watches a chat-completions answer go by without changing it: the finish reason, the token
//! usage and, for streams, the number of events, the characters of text (for an estimate when
//! the upstream reports no usage) and whether `data: [DONE]` came. Recorded on the request's
//! span (`finish_reason`, `prompt_tokens`, `completion_tokens`) for its log line, and handed to
//! the request's [`Meter`](crate::meter::Meter) when it has one. Events are parsed in full only
//! for a logged span; a meter alone gets its usage and text from [`scan`](super::scan).

use std::borrow::Cow;

use api_translate::sse::{SseParser, TooLong};
use serde::Deserialize;
use tracing::Span;

use super::scan;
use crate::meter::Usage;

/// Longest SSE line (and event) accepted from an upstream; longer ones break the stream.
pub(crate) const MAX_SSE_LINE: usize = 1024 * 1024;

/// The fields of a completion or completion chunk the proxy looks at.
#[derive(Debug, Deserialize)]
struct Summary<'a> {
    #[serde(default, borrow)]
    choices: Vec<Choice<'a>>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Debug, Deserialize)]
struct Choice<'a> {
    #[serde(default, borrow)]
    finish_reason: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    delta: Option<Delta<'a>>,
}

/// The text of a stream chunk, counted for the estimate.
#[derive(Debug, Deserialize)]
struct Delta<'a> {
    #[serde(default, borrow)]
    content: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    reasoning_content: Option<Cow<'a, str>>,
}

/// The usage in a whole (non-streamed) chat-completions answer, if it reports one.
pub(crate) fn completion_usage(body: &[u8]) -> Option<Usage> {
    scan::answer_usage(body)
}

/// Incremental observer of one streamed answer.
#[derive(Debug)]
pub(crate) struct StreamObserver {
    parser: SseParser,
    events: u64,
    finish_reason: Option<String>,
    usage: Option<Usage>,
    /// Characters of text and reasoning streamed, for an estimate without usage.
    text_chars: u64,
    done: bool,
    /// Whether the request's span is logged: events are parsed in full for its fields.
    logging: bool,
    /// Whether the request is metered: its usage and text are scanned for.
    metering: bool,
    /// Scans chunks for usage and text when metering.
    scanner: scan::ChunkScanner,
}

impl StreamObserver {
    /// An observer that parses events when the request's span is logged.
    pub(crate) fn new() -> Self {
        Self {
            parser: SseParser::new(MAX_SSE_LINE),
            events: 0,
            finish_reason: None,
            usage: None,
            text_chars: 0,
            done: false,
            logging: !Span::current().is_disabled(),
            metering: false,
            scanner: scan::ChunkScanner::default(),
        }
    }

    /// Looks for usage and text in events from now on: the request is metered.
    pub(crate) fn parse_events(&mut self) {
        self.metering = true;
    }

    /// The usage the upstream reported so far.
    pub(crate) fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// Characters of text streamed so far.
    pub(crate) fn text_chars(&self) -> u64 {
        self.text_chars
    }

    /// Looks at the next chunk of the stream.
    ///
    /// # Errors
    ///
    /// [`TooLong`] when a line exceeds [`MAX_SSE_LINE`]: the stream is to be treated as broken.
    pub(crate) fn feed(&mut self, chunk: &[u8]) -> Result<(), TooLong> {
        let Self {
            parser,
            events,
            finish_reason,
            usage,
            text_chars,
            done,
            logging,
            metering,
            scanner,
        } = self;
        parser.feed(chunk, |event| {
            *events += 1;
            if event.data == b"[DONE]" {
                *done = true;
                return;
            }
            if *logging {
                if let Ok(summary) = serde_json::from_slice::<Summary<'_>>(event.data) {
                    note(&summary, finish_reason, usage);
                    *text_chars += summary
                        .choices
                        .iter()
                        .filter_map(|choice| choice.delta.as_ref())
                        .map(Delta::chars)
                        .sum::<u64>();
                }
            } else if *metering {
                let (found, chars) = scanner.scan(event.data);
                if found.is_some() {
                    *usage = found;
                }
                *text_chars += chars;
            }
        })
    }

    /// Whether the stream, now at its end, was cut: it stopped inside a line, other than a
    /// `data: [DONE]` missing only its line end, with no `[DONE]` before. Only meaningful for
    /// a body whose end is its connection's (with a length or chunks, hyper reports a cut).
    pub(crate) fn was_cut(&self) -> bool {
        !self.done
            && self.parser.partial_line().is_some_and(|line| {
                !matches!(line.trim_ascii_end(), b"data: [DONE]" | b"data:[DONE]")
            })
    }

    /// Records what was seen on the current span, at the normal end of the stream.
    pub(crate) fn finish(&self) {
        record(self.finish_reason.as_deref(), self.usage);
        tracing::debug!(
            events = self.events,
            done = self.done,
            "upstream stream ended"
        );
    }
}

/// Records the finish reason and usage of a non-streaming answer on the current span.
pub(crate) fn record_completion(body: &[u8]) {
    if Span::current().is_disabled() {
        return;
    }
    let Ok(summary) = serde_json::from_slice::<Summary<'_>>(body) else {
        return;
    };
    let (mut finish_reason, mut usage) = (None, None);
    note(&summary, &mut finish_reason, &mut usage);
    record(finish_reason.as_deref(), usage);
}

impl Delta<'_> {
    fn chars(&self) -> u64 {
        [&self.content, &self.reasoning_content]
            .into_iter()
            .flatten()
            .map(|text| text.chars().count() as u64)
            .sum()
    }
}

fn note(summary: &Summary<'_>, finish_reason: &mut Option<String>, usage: &mut Option<Usage>) {
    if let Some(reason) = summary
        .choices
        .iter()
        .find_map(|choice| choice.finish_reason.as_deref())
    {
        *finish_reason = Some(reason.to_owned());
    }
    if summary.usage.is_some() {
        *usage = summary.usage;
    }
}

fn record(finish_reason: Option<&str>, usage: Option<Usage>) {
    let span = Span::current();
    if let Some(reason) = finish_reason {
        span.record("finish_reason", reason);
    }
    if let Some(usage) = usage {
        span.record("prompt_tokens", usage.prompt_tokens);
        span.record("completion_tokens", usage.completion_tokens);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = concat!(
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"},\"finish_reason\":null}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3}}\n\n",
        "data: [DONE]\n\n",
    );

    fn observe(stream: &str) -> StreamObserver {
        let mut observer = StreamObserver::new();
        for piece in stream.as_bytes().chunks(5) {
            observer.feed(piece).expect("short lines");
        }
        observer
    }

    /// Runs `body` inside an enabled DEBUG span, as the request span is under `CLIPROXY_LOG=debug`.
    fn in_recorded_span<T>(body: impl FnOnce() -> T) -> T {
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(std::io::sink)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let _entered = tracing::debug_span!("request").entered();
            body()
        })
    }

    #[test]
    fn notes_finish_reason_usage_and_done_across_chunks() {
        let observer = in_recorded_span(|| observe(STREAM));
        assert_eq!(observer.events, 4);
        assert!(observer.done);
        assert_eq!(observer.finish_reason.as_deref(), Some("stop"));
        let usage = observer.usage.expect("usage");
        assert_eq!((usage.prompt_tokens, usage.completion_tokens), (7, 3));
    }

    #[test]
    fn skips_parsing_events_when_the_span_is_not_logged() {
        let observer = observe(STREAM);
        assert_eq!(observer.events, 4);
        assert!(observer.done);
        assert!(observer.finish_reason.is_none());
        assert!(observer.usage.is_none());
    }

    #[test]
    fn a_meter_alone_gets_the_same_usage_and_text_as_a_full_parse() {
        let logged = in_recorded_span(|| observe(STREAM));
        let mut metered = StreamObserver::new();
        metered.parse_events();
        for piece in STREAM.as_bytes().chunks(5) {
            metered.feed(piece).expect("short lines");
        }
        assert_eq!(metered.usage(), logged.usage());
        assert_eq!(metered.text_chars(), logged.text_chars());
        assert_eq!(metered.text_chars(), 1);
    }

    #[test]
    fn non_json_events_are_only_counted() {
        let mut observer = StreamObserver::new();
        observer
            .feed(b"event: ping\ndata: hello\n\n")
            .expect("short lines");
        assert_eq!(observer.events, 1);
        assert!(observer.finish_reason.is_none());
    }
}
