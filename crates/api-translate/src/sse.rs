//! An incremental server-sent-events parser: feed it the body chunks as they come, get the
//! events (`event` type and joined `data` lines) as they complete.
//!
//! Linear time: every byte is scanned once; only a line split across chunks and the data of
//! the current event are copied, into buffers reused from event to event. Lines end with LF,
//! CRLF or CR (also when the CR and LF arrive in different chunks); lines starting with `:`
//! are comments; `id` and `retry` are ignored. A line longer than the bound, or an event whose
//! data grows past it, is an error: the stream is treated as broken. Per the SSE spec, an
//! event not terminated by a blank line when the stream ends is dropped.

/// A line, or an event's data, exceeded the parser's bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a server-sent-events line or event is longer than {limit} bytes")]
pub struct TooLong {
    /// The bound, in bytes.
    pub limit: usize,
}

/// One dispatched event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event<'a> {
    /// The `event:` field; empty for the default type (`message`).
    pub event: &'a [u8],
    /// The `data:` lines joined with `\n`.
    pub data: &'a [u8],
}

/// Parser state between chunks.
#[derive(Debug)]
pub struct SseParser {
    limit: usize,
    /// The start of a line whose end has not arrived yet.
    partial: Vec<u8>,
    /// The previous chunk ended in CR: an LF starting the next chunk belongs to it.
    after_cr: bool,
    event: Vec<u8>,
    data: Vec<u8>,
    has_data: bool,
}

impl SseParser {
    /// A parser that accepts lines and event data of at most `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            partial: Vec::new(),
            after_cr: false,
            event: Vec::new(),
            data: Vec::new(),
            has_data: false,
        }
    }

    /// Parses `chunk`, calling `on_event` for every event it completes.
    ///
    /// # Errors
    ///
    /// [`TooLong`] when a line or an event's data exceeds the bound; the parser must not be
    /// fed afterwards.
    pub fn feed(
        &mut self,
        chunk: &[u8],
        mut on_event: impl FnMut(Event<'_>),
    ) -> Result<(), TooLong> {
        let mut rest = chunk;
        // An empty chunk leaves the CR waiting for the LF that may follow it.
        if self.after_cr && !rest.is_empty() {
            self.after_cr = false;
            if let [b'\n', tail @ ..] = rest {
                rest = tail;
            }
        }
        while !rest.is_empty() {
            let Some(end) = memchr::memchr2(b'\n', b'\r', rest) else {
                if self.partial.len() + rest.len() > self.limit {
                    return Err(TooLong { limit: self.limit });
                }
                self.partial.extend_from_slice(rest);
                break;
            };
            let (line, tail) = rest.split_at(end);
            if self.partial.len() + line.len() > self.limit {
                return Err(TooLong { limit: self.limit });
            }
            if self.partial.is_empty() {
                self.line(line, &mut on_event)?;
            } else {
                let mut partial = std::mem::take(&mut self.partial);
                partial.extend_from_slice(line);
                let result = self.line(&partial, &mut on_event);
                partial.clear();
                self.partial = partial;
                result?;
            }
            rest = match tail {
                [b'\r', b'\n', tail @ ..] => tail,
                [b'\r'] => {
                    self.after_cr = true;
                    &[]
                }
                [_, tail @ ..] => tail,
                [] => &[],
            };
        }
        Ok(())
    }

    /// The start of a line whose end has not come, if the input so far stops inside one. At
    /// the end of a stream whose end is its connection's, that means it was cut.
    pub fn partial_line(&self) -> Option<&[u8]> {
        (!self.partial.is_empty()).then_some(self.partial.as_slice())
    }

    /// Handles one complete line (without its terminator).
    fn line(&mut self, line: &[u8], on_event: &mut impl FnMut(Event<'_>)) -> Result<(), TooLong> {
        if line.is_empty() {
            if self.has_data {
                on_event(Event {
                    event: &self.event,
                    data: &self.data,
                });
            }
            self.event.clear();
            self.data.clear();
            self.has_data = false;
            return Ok(());
        }
        if line[0] == b':' {
            return Ok(());
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        match field {
            b"data" => {
                let extra = value.len() + usize::from(self.has_data);
                if self.data.len() + extra > self.limit {
                    return Err(TooLong { limit: self.limit });
                }
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
            b"event" => {
                self.event.clear();
                self.event.extend_from_slice(value);
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parser_knows_when_it_stopped_inside_a_line() {
        let after = |input: &[u8]| {
            let mut parser = SseParser::new(1024);
            parser.feed(input, |_| {}).expect("short lines");
            parser.partial_line().map(<[u8]>::to_vec)
        };
        assert_eq!(after(b""), None);
        assert_eq!(after(b"data: a\n\n"), None);
        assert_eq!(
            after(b"data: b\n"),
            None,
            "a whole line, even without its blank line"
        );
        assert_eq!(after(b"data: b\r"), None);
        assert_eq!(
            after(b"data: a\n\ndata: {\"x"),
            Some(b"data: {\"x".to_vec())
        );
        assert_eq!(after(b"data: [DONE]"), Some(b"data: [DONE]".to_vec()));
    }

    /// Feeds `chunks` in order and returns the events as (event, data) strings.
    fn parse(chunks: &[&[u8]]) -> Vec<(String, String)> {
        let mut parser = SseParser::new(1024);
        let mut events = Vec::new();
        for chunk in chunks {
            parser
                .feed(chunk, |event| {
                    events.push((
                        String::from_utf8_lossy(event.event).into_owned(),
                        String::from_utf8_lossy(event.data).into_owned(),
                    ));
                })
                .expect("within the limit");
        }
        events
    }

    fn data(events: &[(String, String)]) -> Vec<&str> {
        events.iter().map(|(_, data)| data.as_str()).collect()
    }

    #[test]
    fn events_in_one_chunk() {
        let events = parse(&[b"data: {\"a\":1}\n\ndata: [DONE]\n\n"]);
        assert_eq!(data(&events), ["{\"a\":1}", "[DONE]"]);
    }

    #[test]
    fn every_split_point_gives_the_same_events() {
        let stream: &[u8] =
            b"event: delta\r\ndata: one\r\n\r\n: keep-alive\n\ndata:two\rdata: three\r\rdata: x\n\n";
        let whole = parse(&[stream]);
        assert_eq!(
            whole,
            [
                ("delta".to_owned(), "one".to_owned()),
                (String::new(), "two\nthree".to_owned()),
                (String::new(), "x".to_owned()),
            ]
        );
        for split in 0..=stream.len() {
            let (a, b) = stream.split_at(split);
            assert_eq!(parse(&[a, b]), whole, "split at {split}");
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(parse(&bytes), whole);
    }

    /// Found by the SSE property test: an empty chunk between a CR and its LF made the LF a
    /// blank line of its own, which ended the event early.
    #[test]
    fn an_empty_chunk_between_cr_and_lf_changes_nothing() {
        let events = parse(&[b"data: a\r", b"", b"\ndata: b\n\n"]);
        assert_eq!(data(&events), ["a\nb"]);
    }

    #[test]
    fn cr_and_lf_in_different_chunks_end_one_line() {
        let events = parse(&[b"data: a\r", b"\n", b"\r", b"\ndata: b\n\n"]);
        assert_eq!(data(&events), ["a", "b"]);
    }

    #[test]
    fn comments_and_unknown_fields_are_ignored() {
        let events = parse(&[b": comment\nid: 7\nretry: 10\nfoo\ndata\n\n"]);
        assert_eq!(data(&events), [""]);
        assert!(parse(&[b": only a comment\n\n"]).is_empty());
    }

    #[test]
    fn multi_line_data_is_joined_with_newlines() {
        let events = parse(&[b"data: first\ndata:  second\ndata\n\n"]);
        assert_eq!(data(&events), ["first\n second\n"]);
    }

    #[test]
    fn an_unterminated_event_at_the_end_is_dropped() {
        assert!(parse(&[b"data: half"]).is_empty());
        assert!(parse(&[b"data: half\n"]).is_empty());
    }

    #[test]
    fn long_lines_are_refused_even_across_chunks() {
        let mut parser = SseParser::new(8);
        assert!(parser.feed(b"data: 12", |_| {}).is_ok());
        assert_eq!(parser.feed(b"3", |_| {}), Err(TooLong { limit: 8 }));

        let mut parser = SseParser::new(8);
        assert_eq!(
            parser.feed(b"data: 123456\n", |_| {}),
            Err(TooLong { limit: 8 })
        );
    }

    #[test]
    fn event_data_is_bounded_too() {
        let mut parser = SseParser::new(8);
        assert_eq!(
            parser.feed(b"data:1234\ndata:5678\n", |_| {}),
            Err(TooLong { limit: 8 })
        );
    }

    #[test]
    fn buffers_are_reused_between_events() {
        let mut parser = SseParser::new(64);
        let mut seen = 0;
        for _ in 0..100 {
            parser
                .feed(b"data: xy\n\n", |event| {
                    assert_eq!(event.data, b"xy");
                    seen += 1;
                })
                .expect("short lines");
        }
        assert_eq!(seen, 100);
        assert!(parser.data.capacity() < 64);
    }
}
