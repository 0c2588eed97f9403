//! Integration tests of auth-core against fake-qwen, offline and in virtual time: waits are
//! recorded by a fake clock that advances instantly, never slept for real.

mod device_flow;
mod refresh;
mod support;
mod transport;
