//! Finding, loading and validating the config file, shared by `cliproxy config check` and
//! every command ([`ConfigFile::load`]): each [`Problem`] names the key, the line and the fix,
//! and never quotes a value that may be a secret (TOML's own errors quote the offending line;
//! they are rebuilt here from their message and position instead).

use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use credential_pool::Strategy;
use toml::de::{DeTable, DeValue};

use super::env::env_value;
use super::file::ConfigFile;

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The key, dotted from its table: `port`, `qwen.models`, `openai-compat[2].base-url`;
    /// or the environment variable.
    pub key: String,
    /// 1-based line in the file; `None` for the environment, or when it is not known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub fix: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(
                f,
                "line {line}, {}: {}; {}",
                self.key, self.message, self.fix
            ),
            None => write!(f, "{}: {}; {}", self.key, self.message, self.fix),
        }
    }
}

/// Parses and checks a config file's text: the file, or every problem found (a TOML syntax or
/// type error stops the parse, so it comes alone).
pub fn parse(text: &str) -> Result<ConfigFile, Vec<Problem>> {
    let file: ConfigFile =
        toml::from_str(text).map_err(|error| vec![toml_problem(text, &error)])?;
    let locator = Locator::new(text);
    let mut problems = check(&file, &locator);
    problems.sort_by_key(|problem| problem.line);
    if problems.is_empty() {
        Ok(file)
    } else {
        Err(problems)
    }
}

impl ConfigFile {
    /// The file [`ConfigFile::load`] reads for `path`: it, else the default file when there is
    /// one.
    pub fn path(path: Option<&Path>) -> Option<PathBuf> {
        match path {
            Some(path) => Some(path.to_owned()),
            None => default_config_path().filter(|p| p.is_file()),
        }
    }

    /// Reads `path`, or the default `~/.config/cliproxy/config.toml` when it exists.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let path = match path {
            Some(path) => path.to_owned(),
            None => match default_config_path().filter(|p| p.is_file()) {
                Some(path) => path,
                None => return Ok(Self::default()),
            },
        };
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "could not read the config file {}; check the path given to --config or CLIPROXY_CONFIG",
                path.display()
            )
        })?;
        parse(&text).map_err(|problems| {
            anyhow::anyhow!(
                "invalid config file {}: {}",
                path.display(),
                joined(&problems)
            )
        })
    }
}

/// One problem inline; several each on a line of its own, indented.
fn joined(problems: &[Problem]) -> String {
    let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
    match lines.len() {
        1 => lines.join(""),
        _ => format!("\n  {}", lines.join("\n  ")),
    }
}

/// The largest `weight`: the weighted schedule holds a slot per unit of weight.
const MAX_WEIGHT: u32 = 1000;

/// `$XDG_CONFIG_HOME/cliproxy/config.toml`, else `~/.config/cliproxy/config.toml`.
pub fn default_config_path() -> Option<PathBuf> {
    let base = env_value("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::home_dir().map(|home| home.join(".config")))?;
    Some(base.join("cliproxy").join("config.toml"))
}

/// The checks of a parsed file that its types cannot express. `locator` finds their lines.
fn check(file: &ConfigFile, locator: &Locator<'_>) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut problem = |path: &[Seg<'_>], message: String, fix: &str| {
        problems.push(Problem {
            key: dotted(path),
            line: locator.line(path),
            message,
            fix: fix.to_owned(),
        });
    };
    if let Some(host) = &file.host
        && let Err(message) = parse_host(host)
    {
        problem(
            &[Seg::Key("host")],
            message,
            "write host = \"127.0.0.1\" (this machine only), \"0.0.0.0\" (every interface) or \"::1\"",
        );
    }
    if let Some(strategy) = &file.routing_strategy
        && let Err(message) = parse_strategy(strategy)
    {
        problem(
            &[Seg::Key("routing-strategy")],
            message,
            "write one of \"round-robin\", \"fill-first\", \"weighted\", \"priority\", \"headroom\"",
        );
    }
    if let Some(key) = &file.management_key
        && let Err(error) = management::ManagementKey::parse(key.trim())
    {
        let fix = match error {
            management::KeyError::Empty => {
                "give a long random string (openssl rand -hex 24), or remove the line to turn the management API off"
            }
            management::KeyError::BadHash(_) => {
                "give the key itself, or a whole Argon2 PHC string ($argon2id$v=19$m=...,t=...,p=...$SALT$HASH)"
            }
        };
        let message = match error {
            management::KeyError::Empty => "the management key is empty".to_owned(),
            management::KeyError::BadHash(why) => {
                format!("the management key looks like an Argon2 hash but is not one ({why})")
            }
        };
        problem(&[Seg::Key("management-key")], message, fix);
    }
    if let Some(reset) = &file.quota_reset
        && let Err(error) = reset.parse::<proxy_server::QuotaReset>()
    {
        problem(
            &[Seg::Key("quota-reset")],
            error.to_string(),
            "write the time of day with its UTC offset, like quota-reset = \"00:00+08:00\"",
        );
    }
    let urls: [(&Option<String>, &[Seg<'_>], &[&str]); 2] = [
        (
            &file.proxy_url,
            &[Seg::Key("proxy-url")],
            &["http", "https", "socks5", "socks5h"],
        ),
        (
            &file.qwen.oauth_base_url,
            &[Seg::Key("qwen"), Seg::Key("oauth-base-url")],
            &["http", "https"],
        ),
    ];
    for (value, path, schemes) in urls {
        let parsed = value.as_deref().map(url::Url::parse);
        if let Some(parsed) = parsed
            && !parsed.is_ok_and(|url| schemes.contains(&url.scheme()))
        {
            problem(
                path,
                format!("not a URL with the scheme {}", schemes.join(", ")),
                "write it with its scheme, like \"http://127.0.0.1:3128\" or \"socks5://127.0.0.1:1080\"",
            );
        }
    }
    for (pattern, target) in &file.models.aliases {
        if pattern.is_empty() || target.trim().is_empty() {
            problem(
                &[Seg::Key("models"), Seg::Key("aliases"), Seg::Key(pattern)],
                "both the name and the model it maps to must be non-empty".to_owned(),
                "write it like \"claude-*\" = \"qwen3-coder-plus\"",
            );
        }
    }
    let mut names = HashSet::new();
    for (index, entry) in file.openai_compat.iter().enumerate() {
        let at = |key| [Seg::Key("openai-compat"), Seg::Index(index), Seg::Key(key)];
        if entry.name.trim().is_empty() {
            problem(
                &at("name"),
                "an [[openai-compat]] entry has an empty name".to_owned(),
                "give it one, such as name = \"dashscope\"",
            );
        } else if entry.name.contains('#') {
            problem(
                &at("name"),
                format!(
                    "{:?} contains `#`, but its keys are labelled <name>#1, <name>#2, ...",
                    entry.name
                ),
                "rename the entry",
            );
        } else if !names.insert(entry.name.as_str()) {
            problem(
                &at("name"),
                format!("[[openai-compat]] {:?} appears more than once", entry.name),
                "give each entry its own name, or merge their api-keys into one entry",
            );
        }
        if entry.api_keys.iter().all(|key| key.trim().is_empty()) {
            problem(
                &at("api-keys"),
                format!("[[openai-compat]] {:?} has no api-keys", entry.name),
                "add at least one key or remove the entry",
            );
        }
        if let Some(weight) = entry.weight
            && weight.get() > MAX_WEIGHT
        {
            problem(
                &at("weight"),
                format!("weight {weight} is more than {MAX_WEIGHT}"),
                "weights are shares: keep them small, like weight = 3 against weight = 1",
            );
        }
        match url::Url::parse(&entry.base_url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => {}
            _ => problem(
                &at("base-url"),
                format!(
                    "[[openai-compat]] {:?}: base-url is not an http(s) URL",
                    entry.name
                ),
                "write it with its scheme, like base-url = \"https://dashscope.aliyuncs.com/compatible-mode/v1\"",
            ),
        }
    }
    for (email, section) in &file.accounts {
        if let Some(weight) = section.weight
            && weight.get() > MAX_WEIGHT
        {
            problem(
                &[Seg::Key("accounts"), Seg::Key(email), Seg::Key("weight")],
                format!("weight {weight} is more than {MAX_WEIGHT}"),
                "weights are shares: keep them small, like weight = 3 against weight = 1",
            );
        }
    }
    problems
}

/// The line of the top-level `key` in the file's `text`, when the file sets it.
pub fn line_of(text: &str, key: &str) -> Option<usize> {
    Locator::new(text).line(&[Seg::Key(key)])
}

/// Parses `host`: an IP address, not a name.
pub(super) fn parse_host(host: &str) -> Result<IpAddr, String> {
    host.parse()
        .map_err(|_| format!("host {host:?} is not an IP address"))
}

/// Parses `routing-strategy`.
pub(super) fn parse_strategy(name: &str) -> Result<Strategy, String> {
    match name {
        // Priority tiers apply under every strategy; "priority" names round robin within
        // each tier, for those who look for it by that name.
        "round-robin" | "priority" => Ok(Strategy::RoundRobin),
        "fill-first" => Ok(Strategy::FillFirst),
        "weighted" => Ok(Strategy::Weighted),
        "headroom" => Ok(Strategy::Headroom),
        other => Err(format!("routing-strategy {other:?} is not known")),
    }
}

/// A step of a key's path: a table's key, or an array's index.
#[derive(Debug, Clone, Copy)]
pub(super) enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// `openai-compat[2].base-url`, with 1-based indexes as people count entries.
fn dotted(path: &[Seg<'_>]) -> String {
    let mut text = String::new();
    for seg in path {
        match seg {
            Seg::Key(key) => {
                if !text.is_empty() {
                    text.push('.');
                }
                if key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                {
                    text.push_str(key);
                } else {
                    text.push_str(&format!("{key:?}"));
                }
            }
            Seg::Index(index) => text.push_str(&format!("[{}]", index + 1)),
        }
    }
    text
}

/// Finds the line of a key in the file's text.
pub(super) struct Locator<'a> {
    text: &'a str,
    table: Option<DeTable<'a>>,
}

impl<'a> Locator<'a> {
    pub(super) fn new(text: &'a str) -> Self {
        Self {
            text,
            table: DeTable::parse(text).ok().map(toml::Spanned::into_inner),
        }
    }

    /// The line of the key at `path` (or of the nearest table on it that exists).
    pub(super) fn line(&self, path: &[Seg<'_>]) -> Option<usize> {
        let mut table = self.table.as_ref()?;
        let mut span: Option<Range<usize>> = None;
        let mut rest = path;
        while let Some((first, tail)) = rest.split_first() {
            let Seg::Key(key) = first else { break };
            let Some((found_key, value)) = table.get_key_value(*key) else {
                break;
            };
            span = Some(found_key.span());
            let mut value: &DeValue<'_> = value.get_ref();
            rest = tail;
            if let (DeValue::Array(items), Some((Seg::Index(index), tail))) =
                (value, rest.split_first())
            {
                let Some(item) = items.get(*index) else { break };
                span = Some(item.span());
                value = item.get_ref();
                rest = tail;
            }
            match value {
                DeValue::Table(inner) => table = inner,
                _ => break,
            }
        }
        span.map(|span| line_at(self.text, span.start))
    }
}

/// The 1-based line of byte `offset`.
fn line_at(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|byte| **byte == b'\n')
        .count()
        + 1
}

/// Keys whose values may be secrets: a message about them never quotes a value.
const SECRET_KEYS: &[&str] = &["api-keys", "proxy-url", "base-url", "oauth-base-url"];

/// A TOML syntax or type error as a [`Problem`]: its line, the key written on that line (in
/// its table), the message without the quoted line, and a fix.
fn toml_problem(text: &str, error: &toml::de::Error) -> Problem {
    let offset = error.span().map_or(0, |span| span.start);
    let line = line_at(text, offset);
    let (table, key) = key_at(text, line);
    let full_key = match (&table, &key) {
        (Some(table), Some(key)) => format!("{table}.{key}"),
        (Some(table), None) => table.clone(),
        (None, Some(key)) => key.clone(),
        (None, None) => "(the file)".to_owned(),
    };
    let raw = error.message().trim();
    let secret =
        key.as_deref().is_none_or(|key| SECRET_KEYS.contains(&key)) || raw.contains("string \"");
    let message = if secret {
        redact_quoted(raw)
    } else {
        raw.to_owned()
    };
    let (message, fix) = explain(&message, key.as_deref(), table.as_deref());
    Problem {
        key: full_key,
        line: error.span().map(|_| line),
        message,
        fix,
    }
}

/// The message and the fix for a TOML error `message` about `key` in `table`.
fn explain(message: &str, key: Option<&str>, table: Option<&str>) -> (String, String) {
    if let Some(unknown) = between(message, "unknown field `", "`") {
        let known: Vec<&str> = message
            .split("expected")
            .nth(1)
            .unwrap_or_default()
            .split('`')
            .skip(1)
            .step_by(2)
            .collect();
        let fix = match closest(unknown, &known) {
            Some(near) => format!("did you mean `{near}`? See docs/configuration.md for the keys"),
            None if known.is_empty() => {
                "remove it; see docs/configuration.md for the keys".to_owned()
            }
            None => format!("remove it, or use one of: {}", known.join(", ")),
        };
        return (format!("unknown key `{unknown}`"), fix);
    }
    if let Some(missing) = between(message, "missing field `", "`") {
        let fix = match example(missing, table) {
            Some(example) => format!("add it, like {example}"),
            None => "add it; see docs/configuration.md".to_owned(),
        };
        return (format!("missing key `{missing}`"), fix);
    }
    // cliproxy's own value errors carry their fix after "; ".
    if let Some((what, fix)) = message.split_once("; ")
        && ["write", "use", "give"]
            .iter()
            .any(|verb| fix.starts_with(verb))
    {
        return (what.to_owned(), fix.to_owned());
    }
    let message = if message.contains("untagged enum Raw") {
        "not a duration".to_owned()
    } else {
        message.to_owned()
    };
    let typed = message.contains("invalid type")
        || message.contains("invalid value")
        || message.contains("expected")
        || message == "not a duration";
    let fix = match key.and_then(|key| example(key, table)) {
        Some(example) if typed => format!("write it like {example}"),
        Some(example) => format!("check the TOML syntax of that line, which should look like {example}"),
        None if typed => "see docs/configuration.md for the key's type".to_owned(),
        None => "check the TOML syntax of that line: key = value, strings in double quotes, lists in [ ]".to_owned(),
    };
    (message.replace('\n', " "), fix)
}

/// The text between `start` and the next `end` after it.
fn between<'t>(text: &'t str, start: &str, end: &str) -> Option<&'t str> {
    let from = text.find(start)? + start.len();
    let to = text[from..].find(end)? + from;
    Some(&text[from..to])
}

/// The candidate nearest to `word` by edit distance, when near enough to be a typo.
fn closest<'c>(word: &str, candidates: &[&'c str]) -> Option<&'c str> {
    candidates
        .iter()
        .map(|candidate| (edit_distance(word, candidate), *candidate))
        .filter(|(distance, _)| *distance <= 2.max(word.len() / 4))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}

/// `text` with everything in double quotes replaced by `"…"`.
fn redact_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut parts = text.split('"');
    if let Some(first) = parts.next() {
        out.push_str(first);
    }
    let rest: Vec<&str> = parts.collect();
    for (index, part) in rest.iter().enumerate() {
        if index % 2 == 0 {
            // Inside quotes (an unclosed quote hides the rest too).
            out.push_str("\"…");
            if index + 1 < rest.len() {
                out.push('"');
            }
        } else {
            out.push_str(part);
        }
    }
    out
}

/// The table (`qwen`, `openai-compat[2]`) that line `line` is in, and the key written on it.
fn key_at(text: &str, line: usize) -> (Option<String>, Option<String>) {
    let mut table: Option<String> = None;
    let mut entries: std::collections::HashMap<String, usize> = Default::default();
    let mut key = None;
    for (index, raw) in text.lines().enumerate().take(line) {
        let trimmed = raw.trim();
        if let Some(name) = trimmed
            .strip_prefix("[[")
            .and_then(|rest| rest.split("]]").next())
        {
            let name = name.trim().to_owned();
            let count = entries.entry(name.clone()).or_default();
            *count += 1;
            table = Some(format!("{name}[{count}]"));
        } else if let Some(name) = trimmed
            .strip_prefix('[')
            .and_then(|rest| rest.split(']').next())
        {
            table = Some(name.trim().to_owned());
        }
        if index + 1 == line {
            key = trimmed
                .split_once('=')
                .map(|(key, _)| key.trim().trim_matches('"').to_owned())
                .filter(|key| !key.is_empty() && !key.starts_with('['));
        }
    }
    (table, key)
}

/// A valid line for `key` of `table`, to show in a fix.
fn example(key: &str, table: Option<&str>) -> Option<String> {
    let section = table.map(|table| table.split('[').next().unwrap_or(table));
    let line = match (section, key) {
        (Some("qwen"), "requests-per-minute") => "requests-per-minute = 60 (0 for no cap)",
        (Some("qwen" | "accounts"), "requests-per-day") => {
            "requests-per-day = 1000 (a whole number; 0 for no limit)"
        }
        (Some("qwen" | "accounts"), "tokens-per-day") => {
            "tokens-per-day = 1000000 (a whole number; 0 for no limit)"
        }
        (Some("openai-compat"), "requests-per-day") => {
            "requests-per-day = 1000 (a whole number above 0; leave it out for no limit)"
        }
        (Some("openai-compat"), "tokens-per-day") => {
            "tokens-per-day = 1000000 (a whole number above 0; leave it out for no limit)"
        }
        (Some("qwen"), "models") => "models = [\"qwen3-coder-plus\", \"coder-model\"]",
        (Some("qwen"), "oauth-base-url") => "oauth-base-url = \"https://chat.qwen.ai\"",
        (Some("qwen"), "client-version") => "client-version = \"0.0.14\"",
        (Some("openai-compat"), "name") => "name = \"dashscope\"",
        (Some("openai-compat"), "base-url") => {
            "base-url = \"https://dashscope.aliyuncs.com/compatible-mode/v1\""
        }
        (Some("openai-compat"), "api-keys") => "api-keys = [\"sk-...\"]",
        (Some("openai-compat"), "models") => "models = [\"qwen3-coder-plus\"]",
        (Some("openai-compat" | "accounts"), "requests-per-minute") => "requests-per-minute = 30",
        (Some("openai-compat" | "accounts"), "weight") => "weight = 2",
        (Some("openai-compat" | "accounts"), "priority") => "priority = 0",
        (Some("openai-compat" | "accounts"), "group") => "group = \"team\"",
        (Some("openai-compat"), "reasoning") => "reasoning = \"effort\" (or \"qwen\", \"off\")",
        (Some("management"), "allow-remote") => "allow-remote = false",
        (Some("metrics"), "hash-emails") => "hash-emails = false",
        (Some(_), _) => return None,
        (None, "auth-dir") => "auth-dir = \"~/.cli-proxy-api\"",
        (None, "proxy-url") => "proxy-url = \"http://127.0.0.1:3128\"",
        (None, "host") => "host = \"127.0.0.1\"",
        (None, "port") => "port = 8317 (a number from 0 to 65535, no quotes)",
        (None, "api-keys") => "api-keys = [\"key-one\", \"key-two\"] (a list of strings)",
        (None, "max-body-bytes") => "max-body-bytes = 33554432",
        (None, "request-retry") => "request-retry = 3",
        (None, "routing-strategy") => "routing-strategy = \"round-robin\"",
        (None, "max-output-tokens") => "max-output-tokens = 65536",
        (None, "strict-permissions") => "strict-permissions = true",
        (None, "allowed-origins") => "allowed-origins = [\"http://localhost:3000\"]",
        (None, "max-connections") => "max-connections = 1024",
        (None, "body-memory-budget") => "body-memory-budget = 536870912",
        (None, "session-affinity") => "session-affinity = true",
        (None, "quota-reset") => "quota-reset = \"00:00+08:00\"",
        (None, "management-key") => "management-key = \"a-long-random-string\"",
        (None, "management") => "[management] followed by allow-remote = true or false",
        (None, "metrics") => "[metrics] followed by hash-emails = true or false",
        (None, "models") => {
            "[models.aliases] (the models Qwen accounts serve go under [qwen] as models = [...])"
        }
        (None, "qwen") => "[qwen] followed by its keys on the next lines",
        (None, "openai-compat") => "[[openai-compat]] followed by name, base-url and api-keys",
        (
            None,
            "header-read-timeout"
            | "upstream-idle-timeout"
            | "shutdown-grace"
            | "refresh-lead"
            | "body-read-timeout"
            | "session-ttl"
            | "probe-after",
        ) => {
            return Some(format!(
                "{key} = \"30s\" (or \"250ms\", \"5m\", \"1h\", or whole seconds like 30)"
            ));
        }
        _ => return None,
    };
    Some(line.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_text_is_redacted() {
        assert_eq!(
            redact_quoted(r#"invalid type: string "sk-1", expected a sequence"#),
            r#"invalid type: string "…", expected a sequence"#
        );
        assert_eq!(redact_quoted(r#"a "open"#), r#"a "…"#);
        assert_eq!(redact_quoted("none"), "none");
    }

    #[test]
    fn typos_find_their_key() {
        assert_eq!(closest("auth-dri", &["auth-dir", "host"]), Some("auth-dir"));
        assert_eq!(closest("zzzzzz", &["auth-dir", "host"]), None);
    }

    #[test]
    fn lines_are_found_in_nested_tables_and_arrays() {
        let text = "port = 1\n[qwen]\nmodels = []\n[[openai-compat]]\nname = \"a\"\n[[openai-compat]]\nname = \"b\"\nbase-url = \"x\"\n";
        let locator = Locator::new(text);
        assert_eq!(locator.line(&[Seg::Key("port")]), Some(1));
        assert_eq!(
            locator.line(&[Seg::Key("qwen"), Seg::Key("models")]),
            Some(3)
        );
        let base = [
            Seg::Key("openai-compat"),
            Seg::Index(1),
            Seg::Key("base-url"),
        ];
        assert_eq!(locator.line(&base), Some(8));
        assert_eq!(dotted(&base), "openai-compat[2].base-url");
        assert_eq!(
            key_at(text, 8),
            (Some("openai-compat[2]".into()), Some("base-url".into()))
        );
    }
}
