//! `cargo xtask dist`: builds the release binary and packages it for
//! distribution.
//!
//! The result is `target/dist/cliproxy-<version>-<triple>.tar.gz` with a single
//! top-level folder `cliproxy-<version>-<triple>/` holding the binary,
//! `install.sh` (binary, man page and completions into a prefix), the shell
//! completions (`completions/`) and the man page (`man/cliproxy.1`) the binary
//! generates (`cliproxy.1` and a page per subcommand), `README.md`, `LICENSE`, `config.example.toml`, `deploy/` (the
//! systemd unit and the Dockerfile) `docs/*.md` and `docs/*.png` (the README's and the docs'
//! links stay valid inside the archive), next to a
//! `<archive>.sha256` file in `sha256sum` format. The archive is
//! deterministic: fixed entry order, uid/gid 0, fixed modes (0755 for the
//! binary and the folders, 0644 otherwise), and every mtime set to
//! `$SOURCE_DATE_EPOCH` (0 when unset); the gzip header carries no timestamp.

use std::{
    env,
    fs::{self, File},
    io::{self, BufWriter, Read, Write},
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};
use flate2::{Compression, GzBuilder};
use sha2::{Digest, Sha256};

use crate::cmd::{cargo, run_checked};

/// Name of the package and of its binary.
const BIN: &str = "cliproxy";

/// One file to put in the archive.
struct Entry {
    /// Where the file is read from.
    source: PathBuf,
    /// Name inside the top-level folder of the archive.
    name: String,
    mode: u32,
}

pub(crate) fn run(root: &Path) -> Result<()> {
    let manifest = root.join("Cargo.toml");
    let manifest_text = fs::read_to_string(&manifest)
        .with_context(|| format!("cannot read {}", manifest.display()))?;
    let version = workspace_version(&manifest_text).with_context(|| {
        format!(
            "no `version` in `[workspace.package]` of {}",
            manifest.display()
        )
    })?;
    let triple = host_triple()?;

    // Check the extra files before spending minutes on a release build.
    let mut entries: Vec<Entry> = shipped_files(root)?
        .into_iter()
        .map(|name| Entry {
            source: root.join(&name),
            name,
            mode: 0o644,
        })
        .collect();

    println!("building {BIN} {version} for {triple} ...");
    run_checked(Command::new(cargo()).current_dir(root).args([
        "build",
        "--release",
        "--locked",
        "-p",
        BIN,
    ]))?;

    let target_dir = target_dir(root);
    let binary = target_dir
        .join("release")
        .join(format!("{BIN}{}", env::consts::EXE_SUFFIX));
    if !binary.is_file() {
        bail!(
            "the build succeeded but {} does not exist",
            binary.display()
        );
    }
    let dist_dir = target_dir.join("dist");
    fs::create_dir_all(&dist_dir)
        .with_context(|| format!("cannot create {}", dist_dir.display()))?;
    let generated = generate(&binary, &dist_dir.join("generated"))?;
    entries.insert(
        0,
        Entry {
            source: binary,
            name: format!("{BIN}{}", env::consts::EXE_SUFFIX),
            mode: 0o755,
        },
    );
    entries.insert(
        1,
        Entry {
            source: root.join("deploy/install.sh"),
            name: "install.sh".to_owned(),
            mode: 0o755,
        },
    );
    entries.extend(generated);
    let stem = format!("{BIN}-{version}-{triple}");
    let archive_name = format!("{stem}.tar.gz");
    let archive = dist_dir.join(&archive_name);
    write_archive(&archive, &stem, &entries, source_date_epoch()?)
        .with_context(|| format!("cannot write {}", archive.display()))?;

    let digest = sha256_file(&archive)?;
    let checksum = dist_dir.join(format!("{archive_name}.sha256"));
    fs::write(&checksum, sha256sum_line(&digest, &archive_name))
        .with_context(|| format!("cannot write {}", checksum.display()))?;

    println!("archive:  {}", archive.display());
    println!("sha256:   {digest}");
    println!("checksum: {}", checksum.display());
    Ok(())
}

/// What the binary generates from its argument grammar, as `(arguments, name in the archive)`.
const GENERATED: &[(&[&str], &str)] = &[
    (&["completions", "bash"], "completions/cliproxy.bash"),
    (&["completions", "zsh"], "completions/_cliproxy"),
    (&["completions", "fish"], "completions/cliproxy.fish"),
];

/// Where the binary writes its man pages (`cliproxy man --out-dir`), in the archive too.
const MAN_DIR: &str = "man";

/// Runs `binary` for each of [`GENERATED`] and for its man pages, writing the outputs under
/// `dir`.
fn generate(binary: &Path, dir: &Path) -> Result<Vec<Entry>> {
    let mut entries = Vec::new();
    for (args, name) in GENERATED {
        let output = Command::new(binary)
            .args(*args)
            .output()
            .with_context(|| format!("cannot run {} {}", binary.display(), args.join(" ")))?;
        if !output.status.success() || output.stdout.is_empty() {
            bail!(
                "`{BIN} {}` failed ({}): {}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let source = dir.join(name);
        if let Some(parent) = source.parent() {
            fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        fs::write(&source, &output.stdout)
            .with_context(|| format!("cannot write {}", source.display()))?;
        entries.push(Entry {
            source,
            name: (*name).to_owned(),
            mode: 0o644,
        });
    }
    let man = dir.join(MAN_DIR);
    let _ = fs::remove_dir_all(&man);
    run_checked(Command::new(binary).arg("man").arg("--out-dir").arg(&man))?;
    let mut pages: Vec<String> = fs::read_dir(&man)
        .with_context(|| format!("cannot list {}", man.display()))?
        .map(|entry| entry.map(|entry| entry.file_name().to_string_lossy().into_owned()))
        .collect::<io::Result<_>>()
        .with_context(|| format!("cannot list {}", man.display()))?;
    pages.sort();
    if !pages.iter().any(|page| page == "cliproxy.1") {
        bail!(
            "`{BIN} man --out-dir` wrote no cliproxy.1 into {}",
            man.display()
        );
    }
    entries.extend(pages.into_iter().map(|page| Entry {
        source: man.join(&page),
        name: format!("{MAN_DIR}/{page}"),
        mode: 0o644,
    }));
    Ok(entries)
}

/// Files at the workspace root that ship next to the binary: fixed ones first, then
/// `docs/*.md` and the images they show (`docs/*.png`), sorted. Their names are the same inside the archive, so relative links work.
fn shipped_files(root: &Path) -> Result<Vec<String>> {
    let mut names: Vec<String> = [
        "README.md",
        "LICENSE",
        "config.example.toml",
        "deploy/cliproxy.service",
        "deploy/Dockerfile",
    ]
    .map(str::to_owned)
    .to_vec();
    let docs = root.join("docs");
    let mut doc_names = Vec::new();
    for entry in fs::read_dir(&docs).with_context(|| format!("cannot list {}", docs.display()))? {
        let path = entry
            .with_context(|| format!("cannot list {}", docs.display()))?
            .path();
        if path
            .extension()
            .is_some_and(|ext| ext == "md" || ext == "png")
            && path.is_file()
        {
            let file = path.file_name().unwrap_or_default().to_string_lossy();
            doc_names.push(format!("docs/{file}"));
        }
    }
    doc_names.sort();
    names.extend(doc_names);
    for name in &names {
        let source = root.join(name);
        if !source.is_file() {
            bail!(
                "`{name}` is missing at the workspace root ({}); it is shipped in the archive",
                source.display()
            );
        }
    }
    Ok(names)
}

/// The `version` of the `[workspace.package]` table, found with a simple line
/// scan (enough for our own, hand-written Cargo.toml).
fn workspace_version(manifest: &str) -> Option<String> {
    let mut in_section = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_section = line == "[workspace.package]";
            continue;
        }
        if !in_section {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if key.trim() != "version" {
            continue;
        }
        let value = value.trim();
        let value = value.split_once('#').map_or(value, |(v, _)| v).trim();
        let version = value.strip_prefix('"')?.strip_suffix('"')?;
        return (!version.is_empty()).then(|| version.to_owned());
    }
    None
}

/// The host target triple, from the `host:` line of `rustc -vV`.
fn host_triple() -> Result<String> {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let out = Command::new(&rustc)
        .arg("-vV")
        .output()
        .with_context(|| format!("failed to run `{rustc} -vV`"))?;
    if !out.status.success() {
        bail!("`{rustc} -vV` failed ({})", out.status);
    }
    parse_host(&String::from_utf8_lossy(&out.stdout))
        .with_context(|| format!("no `host:` line in the output of `{rustc} -vV`"))
}

fn parse_host(rustc_vv: &str) -> Option<String> {
    rustc_vv
        .lines()
        .find_map(|line| line.strip_prefix("host:"))
        .map(|host| host.trim().to_owned())
        .filter(|host| !host.is_empty())
}

/// Cargo's target directory: `$CARGO_TARGET_DIR`, else `<root>/target`.
pub(crate) fn target_dir(root: &Path) -> PathBuf {
    match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => root.join(dir),
        _ => root.join("target"),
    }
}

/// Timestamp for all archive entries (reproducible-builds convention).
fn source_date_epoch() -> Result<u64> {
    match env::var("SOURCE_DATE_EPOCH") {
        Ok(s) if !s.trim().is_empty() => s
            .trim()
            .parse()
            .with_context(|| format!("SOURCE_DATE_EPOCH is not a number: {s:?}")),
        _ => Ok(0),
    }
}

fn write_archive(path: &Path, top: &str, entries: &[Entry], mtime: u64) -> Result<()> {
    let file = BufWriter::new(File::create(path)?);
    // No file name and mtime 0 in the gzip header, so the output is stable.
    let gz = GzBuilder::new().mtime(0).write(file, Compression::best());
    let mut tar = tar::Builder::new(gz);

    let mut dirs = vec![String::new()];
    for entry in entries {
        if let Some((parent, _)) = entry.name.rsplit_once('/')
            && !dirs.iter().any(|dir| dir == parent)
        {
            dirs.push(parent.to_owned());
        }
    }
    for dir in dirs {
        let mut h = header(tar::EntryType::Directory, 0o755, 0, mtime);
        let path = if dir.is_empty() {
            format!("{top}/")
        } else {
            format!("{top}/{dir}/")
        };
        tar.append_data(&mut h, path, io::empty())?;
    }

    for entry in entries {
        let data = fs::read(&entry.source)
            .with_context(|| format!("cannot read {}", entry.source.display()))?;
        let mut h = header(
            tar::EntryType::Regular,
            entry.mode,
            data.len() as u64,
            mtime,
        );
        tar.append_data(&mut h, format!("{top}/{}", entry.name), data.as_slice())?;
    }

    let mut file = tar.into_inner()?.finish()?;
    file.flush()?;
    file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(())
}

fn header(kind: tar::EntryType, mode: u32, size: u64, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(mtime);
    h.set_uid(0);
    h.set_gid(0);
    // `append_data` fills in the path and the checksum.
    h
}

/// Lower-case hex SHA-256 of a file's contents.
fn sha256_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0; 64 * 1024];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

/// One line in `sha256sum` format: hash, two spaces (text mode), file name.
fn sha256sum_line(hex: &str, file_name: &str) -> String {
    format!("{hex}  {file_name}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_from_workspace_package() {
        let manifest = r#"
[workspace]
members = ["crates/*"]

[workspace.package]
edition = "2024"
version = "1.2.3" # bumped by release script
license = "MIT"

[package]
name = "cliproxy"
version = "9.9.9"
"#;
        assert_eq!(workspace_version(manifest).as_deref(), Some("1.2.3"));
    }

    #[test]
    fn version_ignores_other_sections() {
        let manifest = "[package]\nversion = \"0.9.0\"\n[workspace.package]\nedition = \"2024\"\n";
        assert_eq!(workspace_version(manifest), None);
        assert_eq!(
            workspace_version("[workspace.package]\nversion.workspace = true\n"),
            None
        );
    }

    #[test]
    fn real_manifest_has_a_version() {
        let text = fs::read_to_string(crate::cmd::project_root().join("Cargo.toml")).unwrap();
        assert!(workspace_version(&text).is_some());
    }

    #[test]
    fn shipped_docs_links_stay_inside_the_archive() {
        let root = crate::cmd::project_root();
        let shipped = shipped_files(&root).unwrap();
        assert!(
            shipped.contains(&"docs/troubleshooting.md".to_owned()),
            "{shipped:?}"
        );
        for name in shipped.iter().filter(|name| name.ends_with(".md")) {
            let text = fs::read_to_string(root.join(name)).unwrap();
            let dir = Path::new(name).parent().unwrap_or(Path::new(""));
            for link in text.split("](").skip(1) {
                let target = link.split(')').next().unwrap_or_default();
                let file = target.split('#').next().unwrap_or_default();
                if file.is_empty() || file.contains("://") || file.starts_with("mailto:") {
                    continue;
                }
                let mut resolved = PathBuf::new();
                for part in dir.join(file).components() {
                    match part {
                        std::path::Component::ParentDir => {
                            resolved.pop();
                        }
                        std::path::Component::Normal(part) => resolved.push(part),
                        _ => {}
                    }
                }
                let resolved = resolved.to_string_lossy().into_owned();
                assert!(
                    shipped.contains(&resolved),
                    "{name} links to {target}, which the archive does not hold"
                );
            }
        }
    }

    /// install.sh, run from an unpacked archive's layout, puts each file in its place with
    /// its mode, under DESTDIR.
    #[test]
    fn install_sh_installs_the_binary_the_man_page_and_the_completions() {
        use std::os::unix::fs::PermissionsExt as _;
        let root = crate::cmd::project_root();
        let unpacked =
            env::temp_dir().join(format!("cliproxy-install-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&unpacked);
        fs::create_dir_all(&unpacked).unwrap();
        fs::copy(root.join("deploy/install.sh"), unpacked.join("install.sh")).unwrap();
        fs::write(unpacked.join("cliproxy"), "#!/bin/sh\n").unwrap();
        let pages = ["man/cliproxy.1", "man/cliproxy-init.1"];
        for name in GENERATED.iter().map(|(_, name)| *name).chain(pages) {
            let path = unpacked.join(name);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, name).unwrap();
        }
        let staged = unpacked.join("staged");
        let output = Command::new("sh")
            .arg(unpacked.join("install.sh"))
            .arg("/opt/cp")
            .env("DESTDIR", &staged)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let mode = |path: &str| {
            fs::metadata(staged.join(path))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode("opt/cp/bin/cliproxy"), 0o755);
        for (installed, from) in [
            ("opt/cp/share/man/man1/cliproxy.1", "man/cliproxy.1"),
            (
                "opt/cp/share/man/man1/cliproxy-init.1",
                "man/cliproxy-init.1",
            ),
            (
                "opt/cp/share/bash-completion/completions/cliproxy",
                "completions/cliproxy.bash",
            ),
            (
                "opt/cp/share/zsh/site-functions/_cliproxy",
                "completions/_cliproxy",
            ),
            (
                "opt/cp/share/fish/vendor_completions.d/cliproxy.fish",
                "completions/cliproxy.fish",
            ),
        ] {
            assert_eq!(mode(installed), 0o644, "{installed}");
            assert_eq!(fs::read_to_string(staged.join(installed)).unwrap(), from);
        }
        fs::remove_dir_all(&unpacked).unwrap();
    }

    #[test]
    fn host_from_rustc_vv() {
        let out = "rustc 1.95.0 (59807616e 2026-04-14)\nbinary: rustc\n\
                   host: x86_64-unknown-linux-gnu\nrelease: 1.95.0\n";
        assert_eq!(parse_host(out).as_deref(), Some("x86_64-unknown-linux-gnu"));
        assert_eq!(parse_host("binary: rustc\n"), None);
    }

    #[test]
    fn sha256sum_format() {
        // SHA-256 of the empty input.
        let hex = format!("{:x}", Sha256::digest(b""));
        assert_eq!(
            sha256sum_line(&hex, "a.tar.gz"),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  a.tar.gz\n"
        );
    }
}
