//! The metering scanners, for the fuzz targets in `fuzz/` (the `fuzzing` feature; no build of
//! the server has it): what reads an upstream answer's usage and a stream chunk's text without
//! parsing the JSON.

use crate::meter::Usage;
use crate::upstream::scan;

/// Prompt, completion and cached prompt tokens of a usage object.
pub type Tokens = (u64, u64, u64);

fn tokens(usage: Usage) -> Tokens {
    (
        usage.prompt_tokens,
        usage.completion_tokens,
        usage.cached_tokens(),
    )
}

/// The usage as the forward search reads it (a stream chunk's way).
pub fn usage(json: &[u8]) -> Option<Tokens> {
    scan::usage(json).map(tokens)
}

/// The usage the meter reads from a whole answer, looked for from its end.
pub fn answer_usage(json: &[u8]) -> Option<Tokens> {
    scan::answer_usage(json).map(tokens)
}

/// A stream chunk's usage and characters of text, scanned in full.
pub fn full_scan(json: &[u8]) -> (Option<Tokens>, u64) {
    (usage(json), scan::text_chars(json))
}

/// The scanner of one stream's chunks, which reads a chunk of a kept shape by comparison.
#[derive(Debug, Default)]
pub struct ChunkScanner(scan::ChunkScanner);

impl ChunkScanner {
    /// The chunk's usage and characters of text, as the meter reads them.
    pub fn scan(&mut self, json: &[u8]) -> (Option<Tokens>, u64) {
        let (usage, chars) = self.0.scan(json);
        (usage.map(tokens), chars)
    }
}
