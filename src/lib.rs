//! The `cliproxy` package's library: the configuration file model and its resolution
//! ([`config`]), which the binary uses and the fuzz target `config_file` parses arbitrary
//! TOML with (`config_properties` holds the same checks as property tests). Everything else
//! of the binary stays in `main.rs` and its modules.

pub mod config;
#[cfg(test)]
mod config_properties;
