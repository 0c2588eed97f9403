//! Token chains: which refresh tokens descend from which login, worked out from the fake's
//! issued tokens and refresh log.
//!
//! A chain starts with a pair issued outside a refresh (a device-flow login or a mint) and grows
//! by one pair at each rotation. Its *root* is that first refresh token, which names the chain:
//! a client that knows the root of each of its accounts can tell which account a dead refresh
//! token belonged to, however many rotations later.

use std::collections::HashMap;

use fake_qwen::{IssuedToken, RefreshOutcome, RefreshRecord};

/// The chains of every token pair issued so far.
#[derive(Debug, Default)]
pub(crate) struct Chains {
    /// New refresh token → the refresh token it was rotated from.
    parent: HashMap<String, String>,
    /// Roots in the order their chains began.
    roots: Vec<String>,
    /// Root → the newest access token of its chain.
    newest_access: HashMap<String, String>,
}

impl Chains {
    /// Builds the chains from `issued` (oldest first) and the refresh log.
    pub(crate) fn new(issued: &[IssuedToken], refreshes: &[RefreshRecord]) -> Chains {
        let mut chains = Chains::default();
        for record in refreshes {
            if let RefreshOutcome::Issued(pair) = &record.outcome
                && pair.refresh_token != record.refresh_token
            {
                chains
                    .parent
                    .insert(pair.refresh_token.clone(), record.refresh_token.clone());
            }
        }
        for pair in issued {
            let root = chains.root(&pair.refresh_token).to_owned();
            if !chains.newest_access.contains_key(&root) {
                chains.roots.push(root.clone());
            }
            chains.newest_access.insert(root, pair.access_token.clone());
        }
        chains
    }

    /// The first refresh token of `refresh_token`'s chain (itself when it starts one, or when
    /// the fake never issued it).
    pub(crate) fn root<'a>(&'a self, mut refresh_token: &'a str) -> &'a str {
        // Each token has one parent issued before it, so the walk ends; the bound is a guard.
        for _ in 0..=self.parent.len() {
            match self.parent.get(refresh_token) {
                Some(parent) => refresh_token = parent,
                None => break,
            }
        }
        refresh_token
    }

    /// The newest access token of each of `count` chains, starting at chain `start` in the
    /// order the chains began and wrapping around (each chain at most once).
    pub(crate) fn newest_access_tokens(&self, start: usize, count: usize) -> Vec<&str> {
        let total = self.roots.len();
        (0..count.min(total))
            .filter_map(|i| {
                let root = &self.roots[(start + i) % total];
                self.newest_access.get(root).map(String::as_str)
            })
            .collect()
    }

    /// How many chains there are.
    pub(crate) fn len(&self) -> usize {
        self.roots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(access: &str, refresh: &str) -> IssuedToken {
        IssuedToken {
            access_token: access.to_owned(),
            refresh_token: refresh.to_owned(),
            expires_in: fake_qwen::ExpiresIn::Seconds(60),
        }
    }

    fn rotated(from: &str, to: IssuedToken) -> RefreshRecord {
        RefreshRecord {
            refresh_token: from.to_owned(),
            outcome: RefreshOutcome::Issued(to),
        }
    }

    #[test]
    fn rotations_lead_back_to_their_login() {
        let issued = [
            pair("a1", "r1"),
            pair("b1", "s1"),
            pair("a2", "r2"),
            pair("a3", "r3"),
            pair("b2", "s1"),
        ];
        let refreshes = [
            rotated("r1", issued[2].clone()),
            RefreshRecord {
                refresh_token: "r1".to_owned(),
                outcome: RefreshOutcome::Dead { spent: true },
            },
            rotated("r2", issued[3].clone()),
            // A kept refresh token stays in its chain.
            rotated("s1", issued[4].clone()),
        ];
        let chains = Chains::new(&issued, &refreshes);
        assert_eq!(chains.len(), 2);
        assert_eq!(chains.root("r3"), "r1");
        assert_eq!(chains.root("r1"), "r1");
        assert_eq!(chains.root("s1"), "s1");
        assert_eq!(chains.root("unknown"), "unknown");
        assert_eq!(chains.newest_access_tokens(0, 2), ["a3", "b2"]);
        assert_eq!(chains.newest_access_tokens(1, 1), ["b2"]);
        assert_eq!(chains.newest_access_tokens(1, 5), ["b2", "a3"]);
        assert!(Chains::default().newest_access_tokens(3, 2).is_empty());
    }
}
