//! What the fuzz targets share: how an input is cut into the chunks an upstream body arrives
//! in, and how a secret is looked for in `Debug` output.

/// The ways `body` is fed: whole, and in pieces of a length taken from the input (1 to 16
/// bytes), so that chunk boundaries fall everywhere, CRLF pairs and UTF-8 sequences included.
pub fn chunkings(body: &[u8]) -> [Vec<&[u8]>; 2] {
    let piece = 1 + body.len() % 16;
    [vec![body], body.chunks(piece).collect()]
}

/// Whether `shown` (a `Debug` text) reveals `secret`: long enough to mean something, and
/// absent once the secret is replaced by a value nobody writes (`shown_without`), so that
/// text another field shows does not count.
pub fn reveals(shown: &str, secret: &str, shown_without: impl FnOnce() -> String) -> bool {
    secret.chars().count() >= 6 && shown.contains(secret) && !shown_without().contains(secret)
}
