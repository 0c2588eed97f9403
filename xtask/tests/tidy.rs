//! Tidy: what keeps docs/architecture.md and the code from drifting apart, checked on every
//! `cargo test` (`cargo test -p xtask --test tidy` alone).
//!
//! - Every repository path that `README.md` and `docs/*.md` name exists: words starting with
//!   `crates/`, `src/`, `tests/`, `xtask/`, `docs/`, `deploy/` or `fuzz/` (a `*` matches any
//!   name, `{a,b}` either), and every relative link.
//! - The crate dependencies that `cargo metadata` reports keep the rules of the block in the
//!   "Dependency direction" section of docs/architecture.md.
//! - Every Rust file under `crates/*/src`, `src` and `xtask/src` starts with a `//!` comment
//!   that says what it is for.
//!
//! Each check lists every problem it finds, with what to change, and fails once.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Prefixes of the words in docs that are paths in this repository.
const REPO_PREFIXES: [&str; 7] = [
    "crates/", "src/", "tests/", "xtask/", "docs/", "deploy/", "fuzz/",
];

/// Words in docs that look like paths of this repository but name something else, and why.
const NOT_OUR_PATHS: [(&str, &str); 0] = [];

/// The heading of the section of docs/architecture.md whose code block lists the crates'
/// dependencies.
const DEPENDENCY_SECTION: &str = "## Dependency direction";

#[test]
fn paths_named_in_the_docs_exist() {
    let root = root();
    let mut problems = Vec::new();
    for doc in doc_files(&root) {
        let text = fs::read_to_string(root.join(&doc)).expect("read a doc");
        for (line_number, line) in text.lines().enumerate() {
            let at = format!("{}:{}", doc.display(), line_number + 1);
            for word in repo_path_words(line) {
                if NOT_OUR_PATHS.iter().any(|(path, _)| *path == word) {
                    continue;
                }
                if !exists(&root, &word) {
                    problems.push(format!(
                        "{at}: `{word}` names no file or directory of the repository: correct \
                         the path, or, if it is an example that is not ours, add it to \
                         NOT_OUR_PATHS in xtask/tests/tidy.rs with the reason"
                    ));
                }
            }
            for target in relative_links(line) {
                let base = doc.parent().unwrap_or(Path::new(""));
                let resolved = base.join(&target);
                if !root.join(&resolved).exists() {
                    problems.push(format!(
                        "{at}: the link `{target}` leads to {}, which does not exist: correct \
                         the link",
                        resolved.display()
                    ));
                }
            }
        }
    }
    assert_none(problems);
}

#[test]
fn crate_dependencies_keep_the_documented_direction() {
    let root = root();
    let architecture = fs::read_to_string(root.join("docs/architecture.md")).expect("read it");
    let rules = match DependencyRules::parse(&architecture) {
        Ok(rules) => rules,
        Err(problem) => panic!("docs/architecture.md: {problem}"),
    };
    let workspace = workspace_dependencies(&root);
    let mut problems = rules.check(&workspace);
    for name in rules.allowed.keys() {
        if !workspace.contains_key(name) {
            problems.push(format!(
                "docs/architecture.md ({DEPENDENCY_SECTION}): the block lists `{name}`, which is \
                 no workspace crate: remove its line, or correct its name"
            ));
        }
    }
    assert_none(problems);
}

#[test]
fn every_rust_file_says_what_it_is_for() {
    let root = root();
    let mut dirs = vec![root.join("src"), root.join("xtask/src")];
    for entry in fs::read_dir(root.join("crates")).expect("list crates/") {
        dirs.push(entry.expect("a crate dir").path().join("src"));
    }
    let mut problems = Vec::new();
    for dir in dirs {
        for file in rust_files(&dir) {
            let text = fs::read_to_string(&file).expect("read a Rust file");
            let first = text.lines().find(|line| !line.trim().is_empty());
            if !first.is_some_and(|line| line.starts_with("//!")) {
                let relative = file.strip_prefix(&root).unwrap_or(&file);
                problems.push(format!(
                    "{}: does not start with a `//!` comment: add one at the top that says what \
                     this {} is for",
                    relative.display(),
                    if is_crate_root(relative) {
                        "crate"
                    } else {
                        "module"
                    }
                ));
            }
        }
    }
    assert_none(problems);
}

/// What a crate may depend on, by the block in docs/architecture.md.
#[derive(Debug, Default, PartialEq)]
struct DependencyRules {
    /// Per crate: the workspace crates it may depend on (normal and build dependencies).
    allowed: BTreeMap<String, BTreeSet<String>>,
    /// Test-support crates that are only dev-dependencies, and of which crates.
    dev_only: BTreeMap<String, BTreeSet<String>>,
}

impl DependencyRules {
    /// Reads the block of lines `crate (note) → dep, dep   comment`, where the list may be
    /// `(no workspace crate)`, and may end in `; only a dev-dependency (crate, crate)`.
    fn parse(architecture: &str) -> Result<DependencyRules, String> {
        let section = architecture
            .split_once(DEPENDENCY_SECTION)
            .map(|(_, rest)| rest)
            .ok_or_else(|| format!("no `{DEPENDENCY_SECTION}` section: restore it"))?;
        let block = section
            .split_once("```")
            .and_then(|(_, rest)| rest.split_once("```"))
            .map(|(block, _)| block)
            .ok_or_else(|| {
                format!("no ``` block in `{DEPENDENCY_SECTION}`: restore the `crate → deps` block")
            })?;
        let mut rules = DependencyRules::default();
        for line in block.lines().filter(|line| !line.trim().is_empty()) {
            let (name, deps) = line.split_once('→').ok_or_else(|| {
                format!("`{line}` in `{DEPENDENCY_SECTION}` is not `crate → deps`")
            })?;
            let name = name
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
            let (deps, dev) = match deps.split_once(';') {
                Some((deps, dev)) => (deps, Some(dev)),
                None => (deps, None),
            };
            // The list ends where the comment begins: two spaces or more.
            let list = deps.trim().split("  ").next().unwrap_or_default();
            let allowed = if list.starts_with("(no workspace crate)") {
                BTreeSet::new()
            } else {
                names(list)
            };
            rules.allowed.insert(name.clone(), allowed);
            if let Some(dev) = dev {
                let users = dev
                    .split_once("only a dev-dependency (")
                    .and_then(|(_, rest)| rest.split_once(')'))
                    .map(|(users, _)| names(users))
                    .ok_or_else(|| {
                        format!("`{line}`: after `;` write `only a dev-dependency (crate, crate)`")
                    })?;
                rules.dev_only.insert(name, users);
            }
        }
        Ok(rules)
    }

    /// Every dependency of `workspace` that breaks a rule, with what to change.
    fn check(&self, workspace: &BTreeMap<String, Vec<Dependency>>) -> Vec<String> {
        let mut problems = Vec::new();
        for (name, dependencies) in workspace {
            let Some(allowed) = self.allowed.get(name) else {
                problems.push(format!(
                    "docs/architecture.md ({DEPENDENCY_SECTION}): the workspace crate `{name}` \
                     has no line in the block: add `{name} → ...` with the workspace crates it \
                     may depend on"
                ));
                continue;
            };
            for dependency in dependencies {
                let target = &dependency.name;
                let ok = match dependency.kind {
                    Kind::Normal | Kind::Build => allowed.contains(target),
                    Kind::Dev => {
                        allowed.contains(target)
                            || self
                                .dev_only
                                .get(target)
                                .is_some_and(|users| users.contains(name))
                    }
                };
                if ok {
                    continue;
                }
                let fix = match (dependency.kind, self.dev_only.contains_key(target)) {
                    (Kind::Dev, true) => format!(
                        "if `{name}` really needs it to test, add `{name}` to the \
                         `only a dev-dependency (...)` list of `{target}` in the block"
                    ),
                    (_, true) => {
                        format!("`{target}` is test support: make it a dev-dependency of `{name}`")
                    }
                    _ => format!(
                        "remove the dependency, move the code that needs it to a crate that may \
                         depend on `{target}`, or, if the layering really changed, add \
                         `{target}` to the line of `{name}` in the block"
                    ),
                };
                problems.push(format!(
                    "{}: `{name}` has a {} dependency on `{target}`, which the block in \
                     docs/architecture.md ({DEPENDENCY_SECTION}) does not allow: {fix}",
                    dependency.manifest,
                    dependency.kind.word()
                ));
            }
        }
        problems
    }
}

/// The crate names in a comma-separated list.
fn names(list: &str) -> BTreeSet<String> {
    list.split(',')
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .collect()
}

/// One dependency of a workspace crate on another.
#[derive(Debug)]
struct Dependency {
    name: String,
    kind: Kind,
    /// The manifest that declares it, from the repository root.
    manifest: String,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Normal,
    Build,
    Dev,
}

impl Kind {
    fn word(self) -> &'static str {
        match self {
            Kind::Normal => "normal",
            Kind::Build => "build",
            Kind::Dev => "dev",
        }
    }
}

/// Every workspace crate with its dependencies on workspace crates, from `cargo metadata`.
fn workspace_dependencies(root: &Path) -> BTreeMap<String, Vec<Dependency>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(root)
        .output()
        .expect("run cargo metadata");
    assert!(
        output.status.success(),
        "cargo metadata failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: Value = serde_json::from_slice(&output.stdout).expect("cargo metadata's JSON");
    let packages = metadata["packages"].as_array().expect("packages");
    let members: BTreeSet<&str> = packages
        .iter()
        .filter_map(|package| package["name"].as_str())
        .collect();
    let mut workspace = BTreeMap::new();
    for package in packages {
        let name = package["name"].as_str().expect("a package name");
        let manifest = package["manifest_path"].as_str().unwrap_or_default();
        let manifest = Path::new(manifest)
            .strip_prefix(root)
            .map_or_else(|_| manifest.to_owned(), |path| path.display().to_string());
        let dependencies = package["dependencies"]
            .as_array()
            .expect("dependencies")
            .iter()
            .filter_map(|dependency| {
                let target = dependency["name"].as_str()?;
                members.contains(target).then(|| Dependency {
                    name: target.to_owned(),
                    kind: match dependency["kind"].as_str() {
                        Some("dev") => Kind::Dev,
                        Some("build") => Kind::Build,
                        _ => Kind::Normal,
                    },
                    manifest: manifest.clone(),
                })
            })
            .collect();
        workspace.insert(name.to_owned(), dependencies);
    }
    workspace
}

/// The workspace root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// `README.md` and `docs/*.md`, from the root.
fn doc_files(root: &Path) -> Vec<PathBuf> {
    let mut docs = vec![PathBuf::from("README.md")];
    for entry in fs::read_dir(root.join("docs")).expect("list docs/") {
        let path = entry.expect("a doc").path();
        if path.extension().is_some_and(|ext| ext == "md") {
            docs.push(Path::new("docs").join(path.file_name().expect("a name")));
        }
    }
    docs.sort();
    docs
}

/// The words of `line` that are paths of this repository (see [`REPO_PREFIXES`]), without the
/// punctuation around them. Words with a placeholder (`<version>`) are left out.
fn repo_path_words(line: &str) -> Vec<String> {
    let separators = |c: char| c.is_whitespace() || "`()[]\"'|,;".contains(c);
    line.split(separators)
        .map(|word| word.split(':').next().unwrap_or(word).trim_end_matches('.'))
        .filter(|word| REPO_PREFIXES.iter().any(|prefix| word.starts_with(prefix)))
        .filter(|word| !word.contains(['<', '>', '$']))
        .map(|word| word.split('#').next().unwrap_or(word).to_owned())
        .collect()
}

/// The relative targets of the Markdown links in `line` (`[text](target)`), without anchors.
fn relative_links(line: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut rest = line;
    while let Some(start) = rest.find("](") {
        rest = &rest[start + 2..];
        let Some(end) = rest.find(')') else {
            break;
        };
        let target = rest[..end].split('#').next().unwrap_or_default();
        if !target.is_empty() && !target.contains("://") && !target.starts_with("mailto:") {
            targets.push(target.to_owned());
        }
        rest = &rest[end..];
    }
    targets
}

/// Whether `pattern` (a path from the root; `*` matches within one name, `{a,b}` either
/// spelling) names at least one existing file or directory.
fn exists(root: &Path, pattern: &str) -> bool {
    expand_braces(pattern)
        .iter()
        .all(|path| matches_something(root, &path.split('/').collect::<Vec<_>>()))
}

/// `a/{b,c}.rs` as `a/b.rs` and `a/c.rs`.
fn expand_braces(pattern: &str) -> Vec<String> {
    let (Some(open), Some(close)) = (pattern.find('{'), pattern.find('}')) else {
        return vec![pattern.to_owned()];
    };
    if close < open {
        return vec![pattern.to_owned()];
    }
    pattern[open + 1..close]
        .split(',')
        .flat_map(|choice| {
            expand_braces(&format!(
                "{}{choice}{}",
                &pattern[..open],
                &pattern[close + 1..]
            ))
        })
        .collect()
}

/// Whether the names `parts` (with `*` wildcards) lead to something below `dir`.
fn matches_something(dir: &Path, parts: &[&str]) -> bool {
    let Some((first, rest)) = parts.split_first() else {
        return true;
    };
    if first.is_empty() {
        // A trailing `/`: the directory itself.
        return rest.is_empty() && dir.is_dir();
    }
    if !first.contains('*') {
        let next = dir.join(first);
        return next.exists() && matches_something(&next, rest);
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return false;
    };
    entries.filter_map(Result::ok).any(|entry| {
        let name = entry.file_name();
        wildcard_match(first, &name.to_string_lossy()) && matches_something(&entry.path(), rest)
    })
}

/// Whether `name` matches `pattern`, in which `*` stands for any run of characters.
fn wildcard_match(pattern: &str, name: &str) -> bool {
    let mut pieces = pattern.split('*');
    let first = pieces.next().unwrap_or_default();
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let pieces: Vec<&str> = pieces.collect();
    for (index, piece) in pieces.iter().enumerate() {
        if index == pieces.len() - 1 {
            return rest.ends_with(piece);
        }
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    rest.is_empty()
}

/// Every `.rs` file below `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return files;
    };
    for entry in entries {
        let path = entry.expect("a dir entry").path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// Whether `path` is a crate root: `lib.rs`, `main.rs`, or a binary under `src/bin/`.
fn is_crate_root(path: &Path) -> bool {
    let name = path.file_name().and_then(|name| name.to_str());
    matches!(name, Some("lib.rs" | "main.rs"))
        || path
            .parent()
            .is_some_and(|parent| parent.ends_with("src/bin"))
}

/// Fails with every problem, one per line, if there are any.
#[track_caller]
fn assert_none(problems: Vec<String>) {
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn the_dependency_block_reads_as_written() {
    let doc = "## Dependency direction\n\ntext\n\n```\n\
               top (src/)   → mid, low\n\
               mid          → low                  never other\n\
               low          → (no workspace crate)\n\
               fake         → (no workspace crate); only a dev-dependency (mid, top)\n\
               ```\n";
    let rules = DependencyRules::parse(doc).expect("parses");
    let set = |names: &[&str]| names.iter().map(|name| (*name).to_owned()).collect();
    assert_eq!(rules.allowed["top"], set(&["mid", "low"]));
    assert_eq!(rules.allowed["mid"], set(&["low"]));
    assert_eq!(rules.allowed["low"], set(&[]));
    assert_eq!(rules.dev_only["fake"], set(&["mid", "top"]));

    let dependency = |name: &str, kind| Dependency {
        name: name.to_owned(),
        kind,
        manifest: "Cargo.toml".to_owned(),
    };
    let mut workspace = BTreeMap::new();
    workspace.insert("top".to_owned(), vec![dependency("fake", Kind::Dev)]);
    workspace.insert(
        "mid".to_owned(),
        vec![
            dependency("low", Kind::Normal),
            dependency("fake", Kind::Dev),
        ],
    );
    workspace.insert("low".to_owned(), vec![dependency("fake", Kind::Dev)]);
    workspace.insert("fake".to_owned(), vec![dependency("mid", Kind::Normal)]);
    workspace.insert("new".to_owned(), Vec::new());
    let problems = rules.check(&workspace);
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert!(problems[0].contains("`fake` has a normal dependency on `mid`"));
    assert!(problems[1].contains("`low` has a dev dependency on `fake`"));
    assert!(problems[1].contains("add `low` to the `only a dev-dependency (...)` list"));
    assert!(problems[2].contains("`new` has no line in the block"));
}

#[test]
fn paths_are_found_in_prose_code_and_links() {
    let line = "See `crates/a/src/lib.rs:12`, (xtask/src/main.rs) and src/x.rs. Not \
                target/dist/x, `cargo test -p tests/<name>` nor crates/<crate>/src.";
    assert_eq!(
        repo_path_words(line),
        ["crates/a/src/lib.rs", "xtask/src/main.rs", "src/x.rs"]
    );
    assert_eq!(
        relative_links("[a](benchmarks.md#soak), [b](https://x.example/y), [c](../README.md)"),
        ["benchmarks.md", "../README.md"]
    );
    assert_eq!(
        expand_braces("src/serve/{a,b}.rs"),
        ["src/serve/a.rs", "src/serve/b.rs"]
    );
    assert!(wildcard_match("*.md", "architecture.md"));
    assert!(wildcard_match("fake-*", "fake-qwen"));
    assert!(!wildcard_match("*.md", "architecture.rs"));
    assert!(wildcard_match("a*b*c", "a-b-c"));
}
