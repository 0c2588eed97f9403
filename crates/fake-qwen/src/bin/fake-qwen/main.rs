//! `fake-qwen`: the fake Qwen server as a process of its own, for trying clients (Claude Code,
//! Codex CLI, the SDKs) against a real `cliproxy serve` without a Qwen account or the network,
//! and for `cargo xtask soak`.
//!
//! ```text
//! fake-qwen [--api-key KEY]... [--prefer-tool NAME=JSON]... [--tool-calls N] [--leading-text]
//!           [--token-expires-in SECS] [--refresh-latency-ms MS] [--stream-chunks N]
//!           [--stream-interval-ms MS] [--quota-retry-after SECS] [--http-resource-url]
//!           [--control]
//! ```
//!
//! It prints `OAUTH_BASE_URL=...`, `CHAT_BASE_URL=...`, with `--control` `CONTROL_URL=...`, and
//! one `API_KEY=...` line per key it accepts (`sk-fake-qwen` unless `--api-key` is given) on
//! stdout, the `API_KEY` lines last, then serves until it gets SIGINT or SIGTERM. Point an
//! `[[openai-compat]]` entry of cliproxy at it: `base-url = "<CHAT_BASE_URL>"`,
//! `api-keys = ["<API_KEY>"]`. The model answers as the tests' fake does
//! ([`fake_qwen::ChatStep`]): it calls an offered tool, then reports the tool's result.
//! `--prefer-tool Bash='{"command":"ls"}'` makes it call that tool with those arguments
//! (`Read`, `exec_command`, ... likewise), as the end-to-end agent tests do; `--tool-calls N`
//! and `--leading-text` make it call N tools per turn after some text.
//!
//! For Qwen OAuth accounts (`[qwen] oauth-base-url` = `OAUTH_BASE_URL`, token files with
//! `resource_url` = its host and port): `--token-expires-in` sets the life of the access tokens
//! it issues (default 3600 s), `--refresh-latency-ms` delays each refresh answer after the old
//! refresh token was retired, `--stream-chunks` and `--stream-interval-ms` shape streamed
//! answers, and `--quota-retry-after` adds `Retry-After` to quota errors. Token answers carry
//! `resource_url` as Qwen's do, a bare `127.0.0.1:PORT`, which clients take for https;
//! `--http-resource-url` makes them carry `CHAT_BASE_URL` instead. `--control` serves
//! the control API ([`control`]) on a second port: mint token pairs, expire access tokens,
//! inject quota errors, and read which refresh tokens were sent again after their rotation.
//! The values it prints are not secrets.

mod chains;
mod control;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use fake_qwen::{ChatStep, FakeQwen};
use serde_json::Value;
use tokio::signal::unix::{SignalKind, signal};

/// The key accepted when none is given.
const DEFAULT_API_KEY: &str = "sk-fake-qwen";

/// What the command line asks for.
#[derive(Debug, Default, PartialEq)]
struct Options {
    api_keys: Vec<String>,
    preferred: Vec<(String, Value)>,
    tool_calls: Option<u8>,
    leading_text: bool,
    token_expires_in: Option<u64>,
    refresh_latency: Option<Duration>,
    stream_chunks: Option<usize>,
    stream_interval: Option<Duration>,
    quota_retry_after: Option<u64>,
    http_resource_url: bool,
    control: bool,
}

const USAGE: &str = "usage: fake-qwen [--api-key KEY]... [--prefer-tool NAME=JSON]... \
                     [--tool-calls N] [--leading-text] [--token-expires-in SECS] \
                     [--refresh-latency-ms MS] [--stream-chunks N] [--stream-interval-ms MS] \
                     [--quota-retry-after SECS] [--http-resource-url] [--control]";

/// `text` as a whole number within `range`, else a message naming `name` and the range.
fn number(name: &str, text: &str, range: std::ops::RangeInclusive<u64>) -> Result<u64, String> {
    text.parse::<u64>()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| {
            format!(
                "{name} {text:?}: give a whole number from {} to {}",
                range.start(),
                range.end()
            )
        })
}

fn parse(args: impl IntoIterator<Item = String>) -> Result<Options, String> {
    let mut options = Options::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .ok_or_else(|| format!("{name} needs a value; {USAGE}"))
        };
        match arg.as_str() {
            "--api-key" => options.api_keys.push(value("--api-key")?),
            "--prefer-tool" => {
                let spec = value("--prefer-tool")?;
                let (name, json) = spec.split_once('=').ok_or_else(|| {
                    format!("--prefer-tool {spec:?}: write NAME=JSON, e.g. Bash='{{\"command\":\"ls\"}}'")
                })?;
                let arguments: Value = serde_json::from_str(json)
                    .ok()
                    .filter(Value::is_object)
                    .ok_or_else(|| {
                        format!("--prefer-tool {name}: the arguments must be a JSON object, got {json:?}")
                    })?;
                options.preferred.push((name.to_owned(), arguments));
            }
            "--tool-calls" => {
                let count = value("--tool-calls")?;
                let count = count
                    .parse::<u8>()
                    .ok()
                    .filter(|&count| count > 0)
                    .ok_or_else(|| {
                        format!("--tool-calls {count:?}: give a number from 1 to 255")
                    })?;
                options.tool_calls = Some(count);
            }
            "--leading-text" => options.leading_text = true,
            "--token-expires-in" => {
                let text = value("--token-expires-in")?;
                options.token_expires_in = Some(number(
                    "--token-expires-in",
                    &text,
                    1..=u64::from(u32::MAX),
                )?);
            }
            "--refresh-latency-ms" => {
                let text = value("--refresh-latency-ms")?;
                let ms = number("--refresh-latency-ms", &text, 0..=600_000)?;
                options.refresh_latency = Some(Duration::from_millis(ms));
            }
            "--stream-chunks" => {
                let text = value("--stream-chunks")?;
                let chunks = number("--stream-chunks", &text, 1..=10_000)?;
                options.stream_chunks = usize::try_from(chunks).ok();
            }
            "--stream-interval-ms" => {
                let text = value("--stream-interval-ms")?;
                let ms = number("--stream-interval-ms", &text, 0..=600_000)?;
                options.stream_interval = Some(Duration::from_millis(ms));
            }
            "--quota-retry-after" => {
                let text = value("--quota-retry-after")?;
                options.quota_retry_after = Some(number("--quota-retry-after", &text, 0..=86_400)?);
            }
            "--http-resource-url" => options.http_resource_url = true,
            "--control" => options.control = true,
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other:?}; {USAGE}")),
        }
    }
    if options.api_keys.is_empty() {
        options.api_keys.push(DEFAULT_API_KEY.to_owned());
    }
    Ok(options)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let options = match parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("fake-qwen: {message}");
            return ExitCode::from(2);
        }
    };
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        eprintln!("fake-qwen: cannot listen for SIGINT and SIGTERM; stop it with SIGKILL");
        return ExitCode::FAILURE;
    };
    let fake = Arc::new(FakeQwen::start().await);
    for key in &options.api_keys {
        fake.add_api_key(key);
    }
    for (name, arguments) in &options.preferred {
        fake.prefer_tool(name, arguments);
    }
    if options.tool_calls.is_some() || options.leading_text {
        fake.set_chat_step(ChatStep::ToolCalls {
            calls: options.tool_calls.unwrap_or(1),
            leading_text: options.leading_text,
        });
    }
    if let Some(seconds) = options.token_expires_in {
        fake.set_token_expires_in(seconds);
    }
    if let Some(latency) = options.refresh_latency {
        fake.set_refresh_latency(latency);
    }
    if let Some(chunks) = options.stream_chunks {
        fake.set_stream_chunks(chunks);
    }
    if let Some(interval) = options.stream_interval {
        fake.set_stream_interval(interval);
    }
    if options.quota_retry_after.is_some() {
        fake.set_quota_retry_after(options.quota_retry_after);
    }
    if options.http_resource_url {
        fake.set_answered_resource_url(Some(fake.chat_base_url()));
    }
    let control = if options.control {
        match control::Control::start(Arc::clone(&fake)).await {
            Ok(control) => Some(control),
            Err(error) => {
                eprintln!("fake-qwen: cannot serve the control API on 127.0.0.1: {error}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    println!("OAUTH_BASE_URL={}", fake.base_url());
    println!("CHAT_BASE_URL={}", fake.chat_base_url());
    if let Some(control) = &control {
        println!("CONTROL_URL={}", control.url());
    }
    for key in &options.api_keys {
        println!("API_KEY={key}");
    }
    eprintln!("fake-qwen: serving until SIGINT or SIGTERM");
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    drop(control);
    drop(fake);
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn args(line: &[&str]) -> Result<Options, String> {
        parse(line.iter().map(|arg| (*arg).to_owned()))
    }

    #[test]
    fn options_are_read_and_bad_ones_say_what_to_write() {
        assert_eq!(
            args(&[]),
            Ok(Options {
                api_keys: vec![DEFAULT_API_KEY.to_owned()],
                ..Options::default()
            })
        );
        assert_eq!(
            args(&[
                "--api-key",
                "k1",
                "--prefer-tool",
                r#"Read={"file_path":"/x"}"#,
                "--tool-calls",
                "2",
                "--leading-text",
            ]),
            Ok(Options {
                api_keys: vec!["k1".to_owned()],
                preferred: vec![("Read".to_owned(), json!({ "file_path": "/x" }))],
                tool_calls: Some(2),
                leading_text: true,
                ..Options::default()
            })
        );
        assert_eq!(
            args(&[
                "--token-expires-in",
                "60",
                "--refresh-latency-ms",
                "150",
                "--stream-chunks",
                "5",
                "--stream-interval-ms",
                "0",
                "--quota-retry-after",
                "3",
                "--http-resource-url",
                "--control",
            ]),
            Ok(Options {
                api_keys: vec![DEFAULT_API_KEY.to_owned()],
                token_expires_in: Some(60),
                refresh_latency: Some(Duration::from_millis(150)),
                stream_chunks: Some(5),
                stream_interval: Some(Duration::ZERO),
                quota_retry_after: Some(3),
                http_resource_url: true,
                control: true,
                ..Options::default()
            })
        );
        for (line, part) in [
            (&["--prefer-tool", "Read"][..], "NAME=JSON"),
            (&["--prefer-tool", "Read=[1]"][..], "JSON object"),
            (&["--tool-calls", "0"][..], "1 to 255"),
            (&["--token-expires-in", "0"][..], "from 1 to"),
            (&["--stream-chunks", "x"][..], "from 1 to 10000"),
            (&["--refresh-latency-ms", "-1"][..], "whole number"),
            (&["--api-key"][..], "needs a value"),
            (&["--port", "1"][..], "unknown argument"),
        ] {
            let error = args(line).expect_err("refused");
            assert!(error.contains(part), "{line:?}: {error}");
        }
    }
}
