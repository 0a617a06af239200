//! The set of revoked access tokens, sessions and users, checked on every validation
//! without a database read or a network call.
//!
//! auth-service keeps it from its `revocations` table (the source of truth) and publishes its
//! entries over `WatchRevocations`; user-service keeps it from that stream. Both decide
//! "revoked" with [`Revocations::is_revoked`]. Readers take a lock-free snapshot
//! ([`arc_swap`]); writers copy on write, which suits a set that is read thousands of times
//! for each change.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::claims::AccessClaims;

/// What a revocation applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// One access token, by `jti`. No longer written (revoking a token ends its session),
    /// but rows written by earlier versions are honoured until they expire.
    Token,
    /// Every access token of one session, by `sid`.
    Session,
    /// Every access token of one user issued at or before the revocation, by `sub`.
    User,
}

impl Kind {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Token => "token",
            Kind::Session => "session",
            Kind::User => "user",
        }
    }

    /// The kind a stored name denotes.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "token" => Some(Kind::Token),
            "session" => Some(Kind::Session),
            "user" => Some(Kind::User),
            _ => None,
        }
    }
}

/// One revocation, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// What it applies to.
    pub kind: Kind,
    /// The `jti`, `sid` or `sub` it names.
    pub subject: String,
    /// When it was made, Unix seconds.
    pub revoke_time: i64,
    /// When no token it matches can be valid any more, Unix seconds: then it can be dropped.
    pub expire_time: i64,
}

/// Subject → `(revoke_time, expire_time)`, one map per kind so lookups borrow the claim.
#[derive(Default, Clone)]
struct Snapshot {
    tokens: HashMap<String, (i64, i64)>,
    sessions: HashMap<String, (i64, i64)>,
    users: HashMap<String, (i64, i64)>,
}

impl Snapshot {
    fn map(&self, kind: Kind) -> &HashMap<String, (i64, i64)> {
        match kind {
            Kind::Token => &self.tokens,
            Kind::Session => &self.sessions,
            Kind::User => &self.users,
        }
    }

    /// Adds `revocations`, keeping per subject the latest revoke and expiry times.
    fn add(&mut self, revocations: &[Revocation]) {
        for r in revocations {
            let entry = self
                .map_mut(r.kind)
                .entry(r.subject.clone())
                .or_insert((r.revoke_time, r.expire_time));
            entry.0 = entry.0.max(r.revoke_time);
            entry.1 = entry.1.max(r.expire_time);
        }
    }

    fn map_mut(&mut self, kind: Kind) -> &mut HashMap<String, (i64, i64)> {
        match kind {
            Kind::Token => &mut self.tokens,
            Kind::Session => &mut self.sessions,
            Kind::User => &mut self.users,
        }
    }

    fn len(&self) -> usize {
        self.tokens.len() + self.sessions.len() + self.users.len()
    }

    fn oldest_expiry(&self) -> Option<i64> {
        self.tokens
            .values()
            .chain(self.sessions.values())
            .chain(self.users.values())
            .map(|(_, expire)| *expire)
            .min()
    }
}

/// The revocations a verifier knows of.
#[derive(Default)]
pub struct Revocations {
    snapshot: ArcSwap<Snapshot>,
}

impl Revocations {
    /// Whether the token these claims come from is revoked.
    pub fn is_revoked(&self, claims: &AccessClaims) -> bool {
        let snapshot = self.snapshot.load();
        snapshot.tokens.contains_key(&claims.jti)
            || snapshot.sessions.contains_key(&claims.sid)
            || snapshot
                .users
                .get(&claims.sub)
                .is_some_and(|(revoke_time, _)| {
                    i64::try_from(claims.iat).unwrap_or(i64::MAX) <= *revoke_time
                })
    }

    /// Adds revocations; applying one twice changes nothing.
    pub fn apply(&self, revocations: &[Revocation]) {
        if revocations.is_empty() {
            return;
        }
        self.snapshot.rcu(|current| {
            let mut next = Snapshot::clone(current);
            next.add(revocations);
            next
        });
    }

    /// Replaces the whole set with `revocations` (a verifier told the current set anew).
    pub fn reset(&self, revocations: &[Revocation]) {
        let mut next = Snapshot::default();
        next.add(revocations);
        self.snapshot.store(Arc::new(next));
    }

    /// Every revocation held, one per subject (the latest `revoke_time` and `expire_time`
    /// applied to it), ordered by kind and subject: the set as it would be told anew.
    pub fn entries(&self) -> Vec<Revocation> {
        let snapshot = self.snapshot.load();
        let mut entries = Vec::with_capacity(snapshot.len());
        for kind in [Kind::Token, Kind::Session, Kind::User] {
            let start = entries.len();
            entries.extend(
                snapshot
                    .map(kind)
                    .iter()
                    .map(|(subject, (revoke, expire))| Revocation {
                        kind,
                        subject: subject.clone(),
                        revoke_time: *revoke,
                        expire_time: *expire,
                    }),
            );
            entries[start..].sort_unstable_by(|a, b| a.subject.cmp(&b.subject));
        }
        entries
    }

    /// Drops entries whose every matching token has expired.
    pub fn purge(&self, now: i64) {
        if self
            .snapshot
            .load()
            .oldest_expiry()
            .is_none_or(|oldest| oldest >= now)
        {
            return;
        }
        self.snapshot.rcu(|current| {
            let mut next = Snapshot::clone(current);
            for kind in [Kind::Token, Kind::Session, Kind::User] {
                next.map_mut(kind).retain(|_, (_, expire)| *expire >= now);
            }
            Arc::new(next)
        });
    }

    /// How many revocations are held.
    pub fn len(&self) -> usize {
        self.snapshot.load().len()
    }

    /// Whether none are held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(jti: &str, sid: &str, sub: &str, iat: u64) -> AccessClaims {
        AccessClaims {
            iss: String::new(),
            aud: String::new(),
            sub: sub.into(),
            exp: iat + 900,
            nbf: iat,
            iat,
            jti: jti.into(),
            sid: sid.into(),
            roles: vec![],
        }
    }

    fn revocation(kind: Kind, subject: &str, revoke_time: i64) -> Revocation {
        Revocation {
            kind,
            subject: subject.into(),
            revoke_time,
            expire_time: revoke_time + 900,
        }
    }

    #[test]
    fn tokens_sessions_and_users_are_revoked() {
        let set = Revocations::default();
        assert!(!set.is_revoked(&claims("j", "s", "u", 100)));
        set.apply(&[revocation(Kind::Token, "j", 100)]);
        assert!(set.is_revoked(&claims("j", "s", "u", 100)));
        assert!(!set.is_revoked(&claims("k", "s", "u", 100)));
        set.apply(&[revocation(Kind::Session, "s", 100)]);
        assert!(set.is_revoked(&claims("k", "s", "u", 100)));
        set.apply(&[revocation(Kind::User, "v", 100)]);
        assert!(set.is_revoked(&claims("k", "t", "v", 100)));
        assert!(
            !set.is_revoked(&claims("k", "t", "v", 101)),
            "issued after the revocation"
        );
    }

    #[test]
    fn expired_entries_are_purged() {
        let set = Revocations::default();
        set.apply(&[
            revocation(Kind::Token, "old", 0),
            revocation(Kind::Token, "new", 1000),
        ]);
        set.purge(1000);
        assert_eq!(set.len(), 1);
        assert!(set.is_revoked(&claims("new", "s", "u", 1000)));
    }

    #[test]
    fn a_reset_replaces_the_set_and_entries_tell_it_anew() {
        let set = Revocations::default();
        set.apply(&[
            revocation(Kind::Session, "s", 100),
            revocation(Kind::Session, "s", 90),
            revocation(Kind::User, "u", 100),
        ]);
        set.apply(&[revocation(Kind::Token, "j", 50)]);
        assert_eq!(
            set.entries(),
            [
                revocation(Kind::Token, "j", 50),
                revocation(Kind::Session, "s", 100),
                revocation(Kind::User, "u", 100),
            ]
        );
        let copy = Revocations::default();
        copy.reset(&set.entries());
        assert_eq!(copy.entries(), set.entries());
        copy.reset(&[revocation(Kind::Token, "k", 1)]);
        assert!(!copy.is_revoked(&claims("j", "s", "u", 10)));
        assert!(copy.is_revoked(&claims("k", "t", "v", 10)));
        assert_eq!(copy.len(), 1);
    }
}
