//! Lets a test's thread-scoped log subscriber see every callsite while other tests run in the
//! same process.
//!
//! tracing decides once per callsite whether anyone listens. While fewer than two dispatchers
//! are registered it asks only the dispatcher of the thread that reaches the callsite first, so
//! a callsite first reached by a test without a subscriber stays silent for a test that has
//! one. With two idle dispatchers registered for good, every decision asks all of them (under
//! tracing's lock), and an event reaches whichever subscriber its own thread has.

use std::sync::LazyLock;

use tracing::Dispatch;
use tracing::subscriber::NoSubscriber;

/// Two dispatchers that listen to nothing, alive for the whole process.
static IDLE: LazyLock<[Dispatch; 2]> = LazyLock::new(|| {
    [
        Dispatch::new(NoSubscriber::default()),
        Dispatch::new(NoSubscriber::default()),
    ]
});

/// Registers the idle dispatchers, once; called before any proxy exists.
pub fn ask_every_dispatcher() {
    LazyLock::force(&IDLE);
}
