//! A token file's bytes, as anything on disk may hold them: parsing never panics, and what
//! parses survives a write and a re-read unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use token_store::TokenRecord;

fuzz_target!(|bytes: &[u8]| {
    let Ok(record) = TokenRecord::from_json(bytes) else {
        return;
    };
    let _ = record.validate();
    let _ = record.is_expired_at(time::OffsetDateTime::now_utc());
    if let Ok(written) = record.to_json_pretty() {
        let again = TokenRecord::from_json(&written).expect("a written record reads back");
        assert_eq!(
            again.to_json_pretty().expect("and writes again"),
            written,
            "a write and a re-read change nothing"
        );
    }
});
