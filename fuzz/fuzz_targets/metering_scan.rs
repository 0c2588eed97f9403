//! The metering scanners on any upstream bytes. Each line of the input is a stream chunk: the
//! stream scanner (which reads a chunk of the kept shape by two comparisons) must give the
//! same usage and characters of text as a full scan of that chunk. The whole input, read as
//! one answer, must give the same usage from the end as from the start. No scan may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proxy_server::fuzzing::{ChunkScanner, answer_usage, full_scan, usage};

fuzz_target!(|data: &[u8]| {
    assert_eq!(answer_usage(data), usage(data));
    let mut scanner = ChunkScanner::default();
    for chunk in data.split(|&byte| byte == b'\n') {
        assert_eq!(scanner.scan(chunk), full_scan(chunk), "{:?}", String::from_utf8_lossy(chunk));
    }
});
