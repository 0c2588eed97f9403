//! The SSE parser on any bytes, fed whole and in pieces: the same events as a plain reading
//! of the SSE spec, whatever the chunking, and no line or event data over the bound.
//!
//! The first byte sets the bound (1 to 1021 bytes, or none when it is 255); the rest is the
//! stream.
#![no_main]

use api_translate::sse::SseParser;
use cliproxy_fuzz::chunkings;
use libfuzzer_sys::fuzz_target;

/// (event, data) of each dispatched event; `Err` with those before the bound was exceeded.
type Parsed = (Vec<(Vec<u8>, Vec<u8>)>, Result<Option<Vec<u8>>, ()>);

fn parse(limit: usize, chunks: &[&[u8]]) -> Parsed {
    let mut parser = SseParser::new(limit);
    let mut events = Vec::new();
    for chunk in chunks {
        let fed = parser.feed(chunk, |event| {
            assert!(event.data.len() <= limit && event.event.len() <= limit);
            assert!(!event.event.contains(&b'\n') && !event.event.contains(&b'\r'));
            assert!(!event.data.contains(&b'\r'));
            events.push((event.event.to_vec(), event.data.to_vec()));
        });
        if fed.is_err() {
            return (events, Err(()));
        }
    }
    let partial = parser.partial_line().map(<[u8]>::to_vec);
    (events, Ok(partial))
}

/// The SSE spec's event stream interpretation, written plainly: split into lines at CRLF, CR
/// or LF; `:` comments; `field: value`; dispatch at a blank line when a `data` line came.
fn reference(stream: &[u8]) -> Parsed {
    let mut lines = Vec::new();
    let (mut start, mut at) = (0, 0);
    while at < stream.len() {
        match stream[at] {
            b'\n' | b'\r' => {
                lines.push(&stream[start..at]);
                at += if stream[at..].starts_with(b"\r\n") {
                    2
                } else {
                    1
                };
                start = at;
            }
            _ => at += 1,
        }
    }
    let (mut events, mut event, mut data, mut has_data) =
        (Vec::new(), Vec::new(), Vec::new(), false);
    for line in lines {
        if line.is_empty() {
            if has_data {
                events.push((event.clone(), data.clone()));
            }
            (event, data, has_data) = (Vec::new(), Vec::new(), false);
            continue;
        }
        if line[0] == b':' {
            continue;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        match field {
            b"data" => {
                if has_data {
                    data.push(b'\n');
                }
                data.extend_from_slice(value);
                has_data = true;
            }
            b"event" => event = value.to_vec(),
            _ => {}
        }
    }
    let partial = (start < stream.len()).then(|| stream[start..].to_vec());
    (events, Ok(partial))
}

fuzz_target!(|input: &[u8]| {
    let Some((&bound, stream)) = input.split_first() else {
        return;
    };
    let limit = if bound == 255 {
        usize::MAX
    } else {
        1 + usize::from(bound) * 4
    };
    let [whole, pieces] = chunkings(stream);
    let parsed = parse(limit, &whole);
    assert_eq!(
        parse(limit, &pieces),
        parsed,
        "chunk boundaries changed the events"
    );
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    assert_eq!(
        parse(limit, &bytes),
        parsed,
        "byte-by-byte feeding changed the events"
    );
    if limit == usize::MAX {
        assert_eq!(parsed, reference(stream), "not what the SSE spec reads");
    }
});
