//! `cliproxy store migrate`: what a migration did, as the user reads it.

use std::fmt::Write as _;

use account_store::Migrated;

/// The report of a migration from `from` to `to` (both as messages name them: a path, or a
/// database without its password): a summary line, then one line per account that moved or
/// was kept, then one per account left behind.
pub fn migrate_report(migrated: &Migrated, from: &str, to: &str) -> String {
    let mut out = format!(
        "Copied {from} into {to}: {} added, {} updated, {} unchanged, {} kept (refreshed later in the destination), {} disabled API key(s) added.\n",
        migrated.added.len(),
        migrated.updated.len(),
        migrated.unchanged.len(),
        migrated.kept_newer.len(),
        migrated.disabled_keys_added,
    );
    for (what, names) in [
        ("added", &migrated.added),
        ("updated", &migrated.updated),
        (
            "kept the destination's copy, refreshed later than the source's",
            &migrated.kept_newer,
        ),
    ] {
        for name in names {
            let _ = writeln!(out, "{what}: {name}");
        }
    }
    for problem in &migrated.skipped {
        let _ = writeln!(
            out,
            "skipped {problem} (left in the source; fix it and run the migration again)"
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_names_what_moved_and_what_stayed_behind() {
        let migrated = Migrated {
            added: vec!["a@b.com".to_owned()],
            unchanged: vec!["c@d.com".to_owned()],
            kept_newer: vec!["e@f.com".to_owned()],
            skipped: vec![account_store::Problem {
                name: "broken.json".to_owned(),
                reason: "not JSON".to_owned(),
            }],
            disabled_keys_added: 1,
            ..Migrated::default()
        };
        let report = migrate_report(&migrated, "/auth", "postgres://u@h:5432/db");
        assert!(
            report.starts_with(
                "Copied /auth into postgres://u@h:5432/db: 1 added, 0 updated, 1 unchanged, 1 kept"
            ),
            "{report}"
        );
        assert!(report.contains("\nadded: a@b.com\n"), "{report}");
        assert!(
            report.contains("refreshed later than the source's: e@f.com\n"),
            "{report}"
        );
        assert!(
            report.contains("skipped broken.json: not JSON (left in the source"),
            "{report}"
        );
        assert!(!report.contains("c@d.com"), "{report}");
    }
}
