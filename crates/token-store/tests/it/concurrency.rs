//! Locking: no lost updates between threads or processes, and a held
//! account lock really excludes other lockers until it is dropped.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;

use token_store::{AccountKey, AuthDir};

use crate::support::{assert_child_passed, auth_dir, mode, rerun, saved};

/// Set (to `<token file>|<writer id>`) when this binary is re-run as a child writer.
const CHILD_ENV: &str = "TOKEN_STORE_TEST_CHILD_WRITER";
const UPDATES_PER_WRITER: usize = 15;

fn account(dir: &AuthDir) -> PathBuf {
    saved(dir, "a@b.com", "access")
}

fn write_keys(dir: &AuthDir, path: &Path, writer: &str) {
    for i in 0..UPDATES_PER_WRITER {
        dir.update(path, |r| {
            r.extra.insert(format!("{writer}-{i}"), i.into());
        })
        .expect("update");
    }
}

fn assert_all_keys(dir: &AuthDir, path: &Path, writers: &[String]) {
    let record = dir.load(path).expect("load").record;
    for writer in writers {
        for i in 0..UPDATES_PER_WRITER {
            let key = format!("{writer}-{i}");
            assert!(record.extra.contains_key(&key), "lost update {key}");
        }
    }
    assert_eq!(record.extra.len(), writers.len() * UPDATES_PER_WRITER);
}

#[test]
fn concurrent_threads_lose_no_update() {
    let (_root, dir) = auth_dir();
    let path = account(&dir);
    let writers: Vec<String> = (0..8).map(|t| format!("thread{t}")).collect();
    thread::scope(|s| {
        for writer in &writers {
            s.spawn(|| write_keys(&dir, &path, writer));
        }
    });
    assert_all_keys(&dir, &path, &writers);
}

/// Does nothing in a normal run; the child-process test re-runs this binary
/// with only this test and [`CHILD_ENV`] set.
#[test]
fn child_process_writer() {
    let Ok(spec) = env::var(CHILD_ENV) else {
        return;
    };
    let (path, writer) = spec.split_once('|').expect("path|writer");
    let path = Path::new(path);
    let dir = AuthDir::open(path.parent().expect("parent")).expect("open");
    write_keys(&dir, path, writer);
}

#[test]
fn concurrent_processes_lose_no_update() {
    let (_root, dir) = auth_dir();
    let path = account(&dir);
    let children: Vec<_> = ["process0", "process1"]
        .iter()
        .map(|writer| {
            rerun(module_path!(), "child_process_writer")
                .arg("--quiet")
                .env(CHILD_ENV, format!("{}|{writer}", path.display()))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn child")
        })
        .collect();
    write_keys(&dir, &path, "parent");
    for child in children {
        let output = child.wait_with_output().expect("wait");
        assert_child_passed(&output, "child writer");
    }
    let writers = ["process0", "process1", "parent"].map(String::from);
    assert_all_keys(&dir, &path, &writers);
}

/// Whether the lock of the account with `email` is free: tries to take it (on a file of its
/// own, as another process would) and releases it at once.
fn lock_is_free(dir: &AuthDir, email: &str) -> bool {
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = dir.path().join(".locks").join(format!("qwen-{email}.lock"));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .expect("open the lock file");
    match fs2::FileExt::try_lock_exclusive(&file) {
        Ok(()) => true,
        Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => false,
        Err(error) => panic!("try_lock {}: {error}", path.display()),
    }
}

#[test]
fn held_lock_blocks_other_lockers_until_dropped() {
    let (_root, dir) = auth_dir();
    let key = AccountKey::for_email("qwen", "a@b.com");
    let held = dir.lock_account(&key).expect("lock");
    assert!(
        !lock_is_free(&dir, "a@b.com"),
        "a second open of the lock file in the same thread is excluded"
    );
    assert!(lock_is_free(&dir, "c@d.com"), "other accounts are free");

    let released = AtomicBool::new(false);
    let (ready_tx, ready_rx) = mpsc::channel();
    thread::scope(|s| {
        let waiter = s.spawn(|| {
            assert!(!lock_is_free(&dir, "a@b.com"));
            ready_tx.send(()).expect("send");
            let lock = dir.lock_account(&key).expect("lock");
            // Only reachable after the main thread dropped its lock.
            assert!(
                released.load(Ordering::SeqCst),
                "got the lock while it was held"
            );
            lock
        });
        ready_rx.recv().expect("waiter ready");
        released.store(true, Ordering::SeqCst);
        drop(held);
        let lock = waiter.join().expect("waiter");
        assert_eq!(lock.key(), &key);
        assert!(!lock_is_free(&dir, "a@b.com"));
    });
    assert!(lock_is_free(&dir, "a@b.com"), "dropped locks are released");
}

/// Waits until some lock call blocks on the lock file at `lock_path` (a `->` entry for its inode
/// in `/proc/locks`), or `done` says the caller stopped waiting for it.
fn wait_for_a_blocked_locker(lock_path: &Path, done: impl Fn() -> bool) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    let inode = std::fs::metadata(lock_path).expect("lock file").ino();
    let suffix = format!(":{inode}");
    loop {
        let locks = std::fs::read_to_string("/proc/locks").expect("read /proc/locks");
        let blocked = locks.lines().any(|line| {
            line.contains("->")
                && line
                    .split_whitespace()
                    .any(|field| field.ends_with(&suffix))
        });
        if blocked {
            return true;
        }
        if done() {
            return false;
        }
        // Polls an observable state (the kernel's lock table); the pause only spares the CPU.
        thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// A token file whose JSON has no email but whose name does (this store's and the Go tool's
/// names) is locked under the same key as `logout`/`login` of that email: `remove_account`
/// waits for a holder of the file's own lock.
#[test]
fn a_file_with_the_email_only_in_its_name_shares_the_emails_lock() {
    for name in [
        "qwen-Dev@Example.com-1700000000.json",
        "qwen-dev@example.com.json",
    ] {
        let (root, dir) = auth_dir();
        let path = root.path().join(name);
        std::fs::write(
            &path,
            r#"{"type":"qwen","access_token":"a","refresh_token":"r"}"#,
        )
        .expect("write");
        let listed = dir.list().expect("list");
        let key = listed.accounts[0].key();
        assert_eq!(
            key,
            AccountKey::for_email("qwen", "dev@example.com"),
            "{name}"
        );
        let held = dir.lock_account(&key).expect("lock");
        assert!(
            !lock_is_free(&dir, "dev@example.com"),
            "{name}: the file's lock is the email's lock"
        );

        let finished = AtomicBool::new(false);
        let released = AtomicBool::new(false);
        thread::scope(|s| {
            let remover = s.spawn(|| {
                let removed = dir.remove_account("DEV@example.com").expect("remove");
                finished.store(true, Ordering::SeqCst);
                assert!(
                    released.load(Ordering::SeqCst),
                    "{name}: removed while another holder had the file's lock"
                );
                removed
            });
            assert!(
                wait_for_a_blocked_locker(held.lock_path(), || finished.load(Ordering::SeqCst)),
                "{name}: remove_account did not wait for the lock"
            );
            assert!(path.exists(), "{name}: still there while the lock is held");
            released.store(true, Ordering::SeqCst);
            drop(held);
            assert_eq!(
                remover.join().expect("remover"),
                std::slice::from_ref(&path)
            );
        });
        assert!(!path.exists());
    }
}

#[test]
fn lock_files_live_apart_from_token_files() {
    let (root, dir) = auth_dir();
    let path = account(&dir);
    let record = dir.load(&path).expect("load").record;
    let lock = dir
        .lock_account(&AccountKey::for_record(&record, &path))
        .expect("lock");
    assert_eq!(
        lock.lock_path(),
        root.path().join(".locks/qwen-a@b.com.lock")
    );
    assert_eq!(mode(lock.lock_path()), 0o600);
    assert_eq!(mode(&root.path().join(".locks")), 0o700);
    let mut again = lock.read(&path).expect("read");
    again.access_token = "rotated".into();
    lock.write(&path, &again)
        .expect("write under the held lock");
    drop(lock);
    assert_eq!(
        dir.load(&path).expect("load").record.access_token,
        "rotated"
    );
    assert_eq!(dir.list().expect("list").accounts.len(), 1);
}
