//! The configuration: the file as written (`file`, with `[[client-keys]]` in `client_keys`),
//! the environment's variables (`env`), and
//! how flags, environment, file and defaults resolve into the settings the commands take
//! (`resolve`).

mod client_keys;
mod env;
mod file;
mod management;
mod resolve;
#[cfg(test)]
mod tests;

pub use file::{AccountSection, ConfigFile, OpenAiCompatEntry};
pub use resolve::{Overrides, Settings};
