//! fake-qwen's integration tests, one binary: the OAuth endpoints and the fake's life
//! (`fake`), the model API (`chat`) and the `fake-qwen` binary with its control API (`bin`), at
//! the HTTP level with a plain reqwest client from `support`.

mod bin;
mod chat;
mod fake;
mod support;
