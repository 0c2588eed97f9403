//! `fake-qwen`: the fake Qwen server as a process of its own, for trying clients (Claude Code,
//! Codex CLI, the SDKs) against a real `cliproxy serve` without a Qwen account or the network.
//!
//! ```text
//! fake-qwen [--api-key KEY]... [--prefer-tool NAME=JSON]... [--tool-calls N] [--leading-text]
//! ```
//!
//! It prints `OAUTH_BASE_URL=...`, `CHAT_BASE_URL=...` and one `API_KEY=...` line per key it
//! accepts (`sk-fake-qwen` unless `--api-key` is given) on stdout, then serves until it gets
//! SIGINT or SIGTERM. Point an `[[openai-compat]]` entry of cliproxy at it:
//! `base-url = "<CHAT_BASE_URL>"`, `api-keys = ["<API_KEY>"]`. The model answers as the
//! tests' fake does ([`fake_qwen::ChatStep`]): it calls an offered tool, then reports the tool's
//! result. `--prefer-tool Bash='{"command":"ls"}'` makes it call that tool with those
//! arguments (`Read`, `exec_command`, ... likewise), as the end-to-end agent tests do;
//! `--tool-calls N` and `--leading-text` make it call N tools per turn after some text.
//! The values it prints are not secrets.

use std::process::ExitCode;

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
}

const USAGE: &str = "usage: fake-qwen [--api-key KEY]... [--prefer-tool NAME=JSON]... \
                     [--tool-calls N] [--leading-text]";

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
    let fake = FakeQwen::start().await;
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
    println!("OAUTH_BASE_URL={}", fake.base_url());
    println!("CHAT_BASE_URL={}", fake.chat_base_url());
    for key in &options.api_keys {
        println!("API_KEY={key}");
    }
    eprintln!("fake-qwen: serving until SIGINT or SIGTERM");
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
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
            })
        );
        for (line, part) in [
            (&["--prefer-tool", "Read"][..], "NAME=JSON"),
            (&["--prefer-tool", "Read=[1]"][..], "JSON object"),
            (&["--tool-calls", "0"][..], "1 to 255"),
            (&["--api-key"][..], "needs a value"),
            (&["--port", "1"][..], "unknown argument"),
        ] {
            let error = args(line).expect_err("refused");
            assert!(error.contains(part), "{line:?}: {error}");
        }
    }
}
