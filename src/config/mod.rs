//! The configuration: the file as written (`file`, with `[[client-keys]]` in `client_keys`),
//! the environment's variables (`env`), how flags, environment, file and defaults resolve into
//! the settings the commands take (`resolve`), and where accounts live (`store`).

mod client_keys;
mod env;
mod file;
mod resolve;
mod store;
#[cfg(test)]
mod tests;

pub use file::{AccountSection, ConfigFile, OpenAiCompatEntry};
pub use resolve::{Overrides, Settings, expand_home};
pub use store::StoreSettings;
