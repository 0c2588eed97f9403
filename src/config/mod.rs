//! The configuration: the file as written (`file`, with `[[openai-compat]]` in
//! `openai_compat`, `[[client-keys]]` in `client_keys`, and its own notations in `values`), the
//! environment's variables (`env`), how flags, environment, file and defaults resolve into the
//! settings the commands take (`resolve`), and where accounts live (`store`).

mod client_keys;
mod env;
mod file;
mod management;
mod openai_compat;
mod resolve;
mod store;
#[cfg(test)]
mod tests;
mod validate;
mod values;

pub use cli::usage::UsageDb;
pub use env::{env_parsed, env_value};
pub use file::{AccountSection, ConfigFile};
pub use openai_compat::OpenAiCompatEntry;
pub use resolve::{Overrides, Settings, expand_home};
pub use store::StoreSettings;
pub use validate::{Problem, default_config_path, line_of, parse};
