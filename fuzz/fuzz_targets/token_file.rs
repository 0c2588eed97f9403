//! A token file's bytes, as anything on disk may hold them: parsing never panics, what
//! parses survives a write and a re-read unchanged, and `Debug` never shows a token.
#![no_main]

use cliproxy_fuzz::reveals;
use libfuzzer_sys::fuzz_target;
use token_store::TokenRecord;

fuzz_target!(|bytes: &[u8]| {
    let Ok(record) = TokenRecord::from_json(bytes) else {
        return;
    };
    let _ = record.validate();
    let _ = record.is_expired_at(time::OffsetDateTime::now_utc());
    let shown = format!("{record:?}");
    let secrets = [Some(&record.access_token), record.refresh_token.as_ref()];
    for secret in secrets.into_iter().flatten() {
        let without = || {
            let mut other = record.clone();
            other.access_token = "\u{1}".into();
            other.refresh_token = other.refresh_token.as_ref().map(|_| "\u{1}".into());
            format!("{other:?}")
        };
        assert!(
            !reveals(&shown, secret, without),
            "Debug shows a token: {shown}"
        );
    }
    if let Ok(written) = record.to_json_pretty() {
        let again = TokenRecord::from_json(&written).expect("a written record reads back");
        assert_eq!(
            again.to_json_pretty().expect("and writes again"),
            written,
            "a write and a re-read change nothing"
        );
    }
});
