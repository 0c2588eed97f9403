//! The configuration: the file as written (`file`), the environment's variables (`env`), how
//! flags, environment, file and defaults resolve into the settings the commands take
//! (`resolve`), and where accounts live (`store`).

mod env;
mod file;
mod resolve;
mod store;
#[cfg(test)]
mod tests;

pub use file::{AccountSection, ConfigFile, OpenAiCompatEntry};
pub use resolve::{Overrides, Settings, expand_home};
pub use store::StoreSettings;
