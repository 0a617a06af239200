//! The `grimos.auth.v1` messages that carry keys, role tables and revocations from
//! auth-service to the services that verify tokens themselves: one conversion each way, so
//! both ends read the fields the same way.

use grimos_proto::auth::v1 as pb;
use grimos_proto::wkt::Timestamp;

use crate::keys::Jwk;
use crate::revocation::{Kind, Revocation};
use crate::roles::RoleTable;

impl From<Jwk> for pb::VerificationKey {
    fn from(jwk: Jwk) -> Self {
        Self {
            kid: jwk.kid,
            kty: jwk.kty,
            crv: jwk.crv,
            x: jwk.x,
            alg: jwk.alg,
            r#use: jwk.key_use,
        }
    }
}

impl From<pb::VerificationKey> for Jwk {
    fn from(key: pb::VerificationKey) -> Self {
        Self {
            kid: key.kid,
            kty: key.kty,
            crv: key.crv,
            x: key.x,
            alg: key.alg,
            key_use: key.r#use,
        }
    }
}

impl From<&RoleTable> for Vec<pb::RolePermissions> {
    fn from(table: &RoleTable) -> Self {
        table
            .rows()
            .map(|(role, permissions)| pb::RolePermissions {
                role: role.to_owned(),
                permissions: permissions.to_vec(),
            })
            .collect()
    }
}

impl From<Vec<pb::RolePermissions>> for RoleTable {
    fn from(rows: Vec<pb::RolePermissions>) -> Self {
        Self::new(rows.into_iter().map(|row| (row.role, row.permissions)))
    }
}

impl From<Kind> for pb::revocation::Kind {
    fn from(kind: Kind) -> Self {
        match kind {
            Kind::Token => Self::Token,
            Kind::Session => Self::Session,
            Kind::User => Self::User,
        }
    }
}

impl From<&Revocation> for pb::Revocation {
    fn from(r: &Revocation) -> Self {
        Self {
            kind: pb::revocation::Kind::from(r.kind).into(),
            subject: r.subject.clone(),
            revoke_time: Some(Timestamp {
                seconds: r.revoke_time,
                nanos: 0,
            }),
            expire_time: Some(Timestamp {
                seconds: r.expire_time,
                nanos: 0,
            }),
        }
    }
}

/// Why a revocation received cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RevocationError {
    /// Its kind is unspecified or one this version does not know.
    #[error("a revocation of unknown kind {0}")]
    UnknownKind(i32),
    /// It names nothing.
    #[error("a revocation without a subject")]
    MissingSubject,
}

impl TryFrom<&pb::Revocation> for Revocation {
    type Error = RevocationError;

    /// The revocation a message carries. A missing `revoke_time` is taken as the latest time
    /// there is (every token of a revoked user is revoked), a missing `expire_time` as never
    /// expiring: a message short of fields revokes more, never less.
    fn try_from(r: &pb::Revocation) -> Result<Self, Self::Error> {
        let kind = match pb::revocation::Kind::try_from(r.kind) {
            Ok(pb::revocation::Kind::Token) => Kind::Token,
            Ok(pb::revocation::Kind::Session) => Kind::Session,
            Ok(pb::revocation::Kind::User) => Kind::User,
            Ok(pb::revocation::Kind::Unspecified) | Err(_) => {
                return Err(RevocationError::UnknownKind(r.kind));
            }
        };
        if r.subject.is_empty() {
            return Err(RevocationError::MissingSubject);
        }
        Ok(Self {
            kind,
            subject: r.subject.clone(),
            revoke_time: r.revoke_time.as_ref().map_or(i64::MAX, |t| t.seconds),
            expire_time: r.expire_time.as_ref().map_or(i64::MAX, |t| t.seconds),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_keys::TestKey;
    use crate::{KeySet, Revocations};

    #[test]
    fn keys_roles_and_revocations_survive_the_trip() {
        let key = TestKey::generate();
        let wire: Vec<pb::VerificationKey> =
            key.key_set().jwks().into_iter().map(Into::into).collect();
        assert_eq!(wire[0].r#use, "sig");
        let keys = KeySet::from_jwks(&wire.into_iter().map(Jwk::from).collect::<Vec<_>>()).unwrap();
        assert!(keys.contains(&key.kid));

        let table = RoleTable::new([("user", ["a", "b"])]);
        let rows: Vec<pb::RolePermissions> = (&table).into();
        assert_eq!(RoleTable::from(rows), table);

        for kind in [Kind::Token, Kind::Session, Kind::User] {
            let revocation = Revocation {
                kind,
                subject: "x".into(),
                revoke_time: 100,
                expire_time: 1_000,
            };
            let message = pb::Revocation::from(&revocation);
            assert_eq!(Revocation::try_from(&message).unwrap(), revocation);
        }
    }

    #[test]
    fn a_revocation_short_of_fields_revokes_more_and_one_of_no_kind_is_refused() {
        let message = pb::Revocation {
            kind: pb::revocation::Kind::User.into(),
            subject: "u".into(),
            revoke_time: None,
            expire_time: None,
        };
        let revocation = Revocation::try_from(&message).unwrap();
        let set = Revocations::default();
        set.apply(&[revocation]);
        let claims = crate::AccessClaims {
            iss: String::new(),
            aud: String::new(),
            sub: "u".into(),
            exp: u64::MAX,
            nbf: 0,
            iat: u64::MAX / 2,
            jti: "j".into(),
            sid: "s".into(),
            roles: vec![],
        };
        assert!(set.is_revoked(&claims));
        set.purge(i64::MAX - 1);
        assert!(set.is_revoked(&claims), "never expires");

        for kind in [0, 99] {
            let unknown = pb::Revocation {
                kind,
                ..message.clone()
            };
            assert_eq!(
                Revocation::try_from(&unknown).unwrap_err(),
                RevocationError::UnknownKind(kind)
            );
        }
        let nameless = pb::Revocation {
            subject: String::new(),
            ..message
        };
        assert_eq!(
            Revocation::try_from(&nameless).unwrap_err(),
            RevocationError::MissingSubject
        );
    }
}
