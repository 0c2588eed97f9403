//! OAuth 2.0 as Qwen uses it: the device authorization grant (RFC 8628) with PKCE S256
//! (RFC 7636), and refreshing. Pure protocol: no files, no terminal, no global state.
//!
//! Use: build an [`OAuthClient`] from a [`ProviderProfile`] (normally [`ProviderProfile::qwen`])
//! and [`HttpSettings`]; call [`OAuthClient::start_device_login`], show the user
//! [`DeviceAuthorization::verification_uri_complete`], then await
//! [`OAuthClient::poll_for_token`] with a [`Clock`] (a [`TokioClock`] outside tests). Later,
//! [`OAuthClient::refresh`] and [`TokenSet::merged_with_previous`] keep the account alive.
//!
//! Invariants:
//! - Secrets — access and refresh tokens, device codes, PKCE verifiers, proxy passwords —
//!   never appear in `Debug` output, error messages or logs.
//! - Every request, polls included, goes through the one HTTP client built from
//!   [`HttpSettings`], so the proxy applies to all of them.
//! - Answers that are not JSON (firewall and captcha pages) become typed errors, never parse
//!   panics; every failure is a distinct error variant whose message says what to do next.
//! - Answers are bounded: redirects are not followed (RFC 9700) and at most 1 MiB of a body is
//!   read; both are typed errors. A token's lifetime is always within
//!   [`TokenSet::MIN_LIFETIME`]..=[`TokenSet::MAX_LIFETIME`], whatever `expires_in` said.
//! - Polling measures its deadline and waits only through the injected [`Clock`], and its
//!   future is cancel-safe: dropping it abandons the login and leaves nothing running.

mod answer;
mod client;
mod clock;
mod device;
mod error;
mod http;
mod pkce;
mod poll;
mod profile;
mod refresh;
mod resource;
mod token;

pub use client::OAuthClient;
pub use clock::{Clock, InvalidClockScale, Sleep, TokioClock};
pub use device::DeviceAuthorization;
pub use error::{DeviceFlowError, RefreshError, TransientCause};
pub use http::{ClientBuildError, HttpSettings};
pub use pkce::{Pkce, RandomnessError};
pub use poll::PollEvent;
pub use profile::ProviderProfile;
pub use resource::{QWEN_DEFAULT_BASE_URL, qwen_base_url};
pub use token::TokenSet;
