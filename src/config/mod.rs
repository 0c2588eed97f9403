//! The configuration: the file as written (`file`), the environment's variables (`env`), and
//! how flags, environment, file and defaults resolve into the settings the commands take
//! (`resolve`).

mod env;
mod file;
mod resolve;
#[cfg(test)]
mod tests;
mod validate;

pub(crate) use env::{env_parsed, env_value};
pub use file::{AccountSection, ConfigFile, OpenAiCompatEntry};
pub use resolve::{Overrides, Settings, expand_home};
pub use validate::{Problem, default_config_path, line_of, parse};
