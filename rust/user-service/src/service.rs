//! What user-service does, independent of transport: sign-up across two databases,
//! authorization, reads, updates, deletion and pagination. The gRPC handlers (`api.rs`) and,
//! through them, the HTTP routes call only this.
//!
//! **Sign-up is consistent across the two databases.** A profile is visible only in state
//! `active`, and becomes active only after auth-service stored the credential:
//! 1. reserve the email with a `pending` row, leased for `lease` (so a concurrent sign-up for
//!    the same email gets `ALREADY_EXISTS`);
//! 2. `CreateCredential` with the new user id;
//! 3. mark the row `active` with the roles auth granted.
//!
//! A failure auth reports for sure (invalid input, duplicate) deletes the pending row. An
//! ambiguous one (timeout, auth down) deletes the credential if it can, else ends the lease so
//! the next attempt cleans up. After a crash between 2 and 3 the user can log in, and their
//! first authenticated call activates the profile (the token proves the credential exists);
//! otherwise the reconciler deletes the credential and the row once the lease has ended. A
//! retry of the sign-up with the same email takes over an abandoned row the same way.
//! Deletion mirrors it: mark `deleting` (invisible), `DeleteCredential`, delete the row; the
//! reconciler finishes what a crash interrupts.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use grimos_proto::auth::v1 as auth_pb;
use grimos_proto::user::v1 as pb;
use grimos_proto::wkt::{FieldMask, Timestamp};
use secrecy::{ExposeSecret, SecretString};
use tonic::Code;
use tonic_types::FieldViolation;

use crate::auth_client::AuthClient;
use crate::error::{Error, Result};
use crate::page_token::PageTokens;
use crate::store::{Profile, Reservation, State, UserStore};

/// Page size when the request says 0.
const DEFAULT_PAGE_SIZE: i32 = 50;
/// The largest page served.
const MAX_PAGE_SIZE: i32 = 1000;

/// Who is calling, as auth-service vouched for their access token.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The user id.
    pub user_id: String,
    /// Their roles.
    pub roles: Vec<String>,
    /// Every permission the roles grant.
    pub permissions: Vec<String>,
}

impl Caller {
    /// Whether the caller holds `permission`.
    pub fn can(&self, permission: &str) -> bool {
        self.permissions.iter().any(|p| p == permission)
    }

    /// Whether the caller may act on `user_id` with the `<action>.self` permission on
    /// themself or the `<action>` permission on anyone.
    fn may(&self, user_id: &str, any: &str, own: &str) -> bool {
        self.can(any) || (user_id == self.user_id && self.can(own))
    }
}

/// user-service's state and operations.
pub struct Users {
    store: Arc<dyn UserStore>,
    auth: AuthClient,
    page_tokens: PageTokens,
    lease: Duration,
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

fn timestamp(micros: i64) -> Timestamp {
    Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: i32::try_from(micros.rem_euclid(1_000_000) * 1000).unwrap_or(0),
    }
}

impl From<Profile> for pb::User {
    fn from(p: Profile) -> Self {
        Self {
            id: p.id,
            email: p.email,
            display_name: p.display_name,
            roles: p.roles,
            create_time: Some(timestamp(p.create_time)),
            update_time: Some(timestamp(p.update_time)),
        }
    }
}

/// The update-mask rules of `UpdateUser`: the display name an update of `user` with `mask`
/// stores, or every field violation that refuses it. The mask must name at least one field,
/// `display_name` is the only updatable one, and the new name must pass the input rules.
pub fn updated_display_name(user: &pb::User, mask: Option<&FieldMask>) -> Result<String> {
    let paths = mask.map(|m| m.paths.as_slice()).unwrap_or_default();
    if paths.is_empty() {
        return Err(Error::invalid(
            "update_mask",
            "update_mask must name at least one field",
        ));
    }
    let mut violations: Vec<FieldViolation> = paths
        .iter()
        .filter(|path| path.as_str() != "display_name")
        .map(|path| {
            FieldViolation::new(
                "update_mask",
                format!("{path:?} cannot be updated; the updatable field is display_name"),
            )
        })
        .collect();
    let display_name = grimos_common::validate::display_name(&user.display_name)
        .map_err(|reason| violations.push(FieldViolation::new("user.display_name", reason)))
        .ok();
    display_name
        .filter(|_| violations.is_empty())
        .ok_or(Error::InvalidArgument(violations))
}

impl Users {
    /// Assembles the service; `lease` bounds how long a sign-up owns its pending row.
    pub async fn new(store: Arc<dyn UserStore>, auth: AuthClient, lease: Duration) -> Result<Self> {
        let page_key = store.page_key().await?;
        let page_tokens = PageTokens::new(&page_key)
            .map_err(|e| Error::Internal(anyhow::anyhow!("page token key: {e}")))?;
        Ok(Self {
            store,
            auth,
            page_tokens,
            lease,
        })
    }

    /// The auth-service client.
    pub fn auth(&self) -> &AuthClient {
        &self.auth
    }

    /// The storage, for readiness checks.
    pub fn store(&self) -> &Arc<dyn UserStore> {
        &self.store
    }

    /// Whether this user-service can do its job: its database answers and auth-service is
    /// SERVING. The reason when not. `/readyz` and gRPC health both follow it.
    pub async fn readiness(&self) -> std::result::Result<(), String> {
        let database = self.store.ping().await;
        grimos_server::metrics::database_up("user", database.is_ok());
        database.map_err(|_| "database unavailable".to_owned())?;
        self.auth
            .health_check()
            .await
            .map_err(|status| format!("auth-service not ready: {}", status.message()))
    }

    /// Checks a bearer token with auth-service (`ValidateToken`).
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Caller> {
        let token = authorization
            .and_then(grimos_common::bearer::bearer_token)
            .ok_or(Error::Unauthenticated("a bearer access token is required"))?;
        let validated = self.auth.validate_token(token).await?;
        Ok(Caller {
            user_id: validated.user_id,
            roles: validated.roles,
            permissions: validated.permissions,
        })
    }

    /// Signs a user up (see the module documentation for how it stays consistent).
    pub async fn create_user(
        &self,
        email: &str,
        password: SecretString,
        display_name: &str,
    ) -> Result<Profile> {
        let mut violations = Vec::new();
        let email = grimos_common::validate::email(email)
            .map_err(|reason| violations.push(FieldViolation::new("email", reason)))
            .ok();
        if let Err(reason) = grimos_common::validate::password(password.expose_secret()) {
            violations.push(FieldViolation::new("password", reason));
        }
        let display_name = grimos_common::validate::display_name(display_name)
            .map_err(|reason| violations.push(FieldViolation::new("display_name", reason)))
            .ok();
        let (Some(email), Some(display_name)) = (email, display_name) else {
            return Err(Error::InvalidArgument(violations));
        };
        if !violations.is_empty() {
            return Err(Error::InvalidArgument(violations));
        }

        let now = now_micros();
        let lease = i64::try_from(self.lease.as_micros()).unwrap_or(i64::MAX);
        let profile = Profile {
            id: uuid::Uuid::now_v7().to_string(),
            email: email.clone(),
            display_name,
            roles: Vec::new(),
            state: State::Pending,
            create_time: now,
            update_time: now,
            lease_until: Some(now.saturating_add(lease)),
        };
        match self.store.reserve(&profile).await? {
            Reservation::Reserved => {}
            Reservation::Taken | Reservation::InFlight => return Err(Error::AlreadyExists),
            Reservation::Abandoned { id } => {
                // A crashed or failed sign-up left this row; its credential may exist.
                self.auth.delete_credential(&id).await?;
                if !self.store.replace_abandoned(&id, &profile, now).await? {
                    return Err(Error::AlreadyExists);
                }
                tracing::info!(abandoned = %id, "took over an abandoned sign-up");
            }
        }

        let created = self
            .auth
            .create_credential(auth_pb::CreateCredentialRequest {
                user_id: profile.id.clone(),
                email,
                password: password.expose_secret().to_owned(),
            })
            .await;
        let roles = match created {
            Ok(response) => response.roles,
            Err(status) => return Err(self.undo_sign_up(&profile.id, status).await),
        };
        match self.store.activate(&profile.id, &roles).await? {
            Some(active) => {
                tracing::info!(user_id = %active.id, "user signed up");
                Ok(active)
            }
            None => {
                // The lease ran out and the reconciler claimed the row: undo our credential.
                let _ = self.auth.delete_credential(&profile.id).await;
                Err(Error::Unavailable(
                    "sign-up took too long; please retry".into(),
                ))
            }
        }
    }

    /// Cleans up after `CreateCredential` failed, and says why to the caller.
    async fn undo_sign_up(&self, id: &str, status: tonic::Status) -> Error {
        let definitive = matches!(
            status.code(),
            Code::InvalidArgument
                | Code::AlreadyExists
                | Code::PermissionDenied
                | Code::Unauthenticated
                | Code::FailedPrecondition
                | Code::ResourceExhausted
        );
        let cleaned = if definitive {
            Ok(())
        } else {
            // Maybe auth stored the credential before failing: remove it if we can.
            self.auth.delete_credential(id).await.map(|_| ())
        };
        let store_result = match cleaned {
            Ok(()) => self.store.delete_pending(id).await,
            Err(_) => self.store.release(id).await,
        };
        if let Err(error) = store_result {
            return error;
        }
        match status.code() {
            Code::AlreadyExists => Error::AlreadyExists,
            Code::InvalidArgument => Error::Upstream(status),
            Code::Unauthenticated | Code::PermissionDenied => {
                tracing::error!(code = ?status.code(), "auth-service refused our service credential");
                Error::Internal(anyhow::anyhow!(
                    "service credential refused by auth-service"
                ))
            }
            _ => Error::from(status),
        }
    }

    /// The profile `id` if visible. The caller's own pending profile is activated: their
    /// valid token proves the credential exists (a sign-up interrupted after step 2).
    async fn visible(&self, id: &str, caller: &Caller) -> Result<Option<Profile>> {
        match self.store.get(id).await? {
            Some(p) if p.state == State::Active => Ok(Some(p)),
            Some(p) if p.state == State::Pending && p.id == caller.user_id => {
                let activated = self.store.activate(id, &caller.roles).await?;
                if activated.is_some() {
                    tracing::info!(user_id = %id, "completed an interrupted sign-up");
                }
                Ok(activated)
            }
            _ => Ok(None),
        }
    }

    /// GetUser: the user themself or an admin.
    pub async fn get_user(&self, caller: &Caller, user_id: &str) -> Result<Profile> {
        if user_id.is_empty() {
            return Err(Error::invalid("user_id", "user_id is required"));
        }
        if !caller.may(user_id, "users.read", "users.read.self") {
            return Err(Error::PermissionDenied(
                "you may only read your own profile",
            ));
        }
        self.visible(user_id, caller).await?.ok_or(Error::NotFound)
    }

    /// GetCurrentUser.
    pub async fn current_user(&self, caller: &Caller) -> Result<Profile> {
        if !caller.can("users.read.self") {
            return Err(Error::PermissionDenied("you may not read your profile"));
        }
        self.visible(&caller.user_id, caller)
            .await?
            .ok_or(Error::NotFound)
    }

    /// UpdateUser: applies exactly the fields in `mask`; only `display_name` is updatable.
    pub async fn update_user(
        &self,
        caller: &Caller,
        user: Option<pb::User>,
        mask: Option<FieldMask>,
    ) -> Result<Profile> {
        let user = user.ok_or_else(|| Error::invalid("user", "user is required"))?;
        if user.id.is_empty() {
            return Err(Error::invalid("user.id", "user.id is required"));
        }
        if !caller.may(&user.id, "users.update", "users.update.self") {
            return Err(Error::PermissionDenied(
                "you may only update your own profile",
            ));
        }
        let display_name = updated_display_name(&user, mask.as_ref())?;
        self.visible(&user.id, caller)
            .await?
            .ok_or(Error::NotFound)?;
        self.store
            .update_display_name(&user.id, &display_name, now_micros())
            .await?
            .ok_or(Error::NotFound)
    }

    /// DeleteUser: removes the profile and the credential.
    pub async fn delete_user(&self, caller: &Caller, user_id: &str) -> Result<()> {
        if user_id.is_empty() {
            return Err(Error::invalid("user_id", "user_id is required"));
        }
        if !caller.may(user_id, "users.delete", "users.delete.self") {
            return Err(Error::PermissionDenied(
                "you may only delete your own profile",
            ));
        }
        self.visible(user_id, caller)
            .await?
            .ok_or(Error::NotFound)?;
        if !self.store.mark_deleting(user_id, None).await? {
            return Err(Error::NotFound);
        }
        self.finish_deletion(user_id).await;
        Ok(())
    }

    /// Deletes the credential, then the row. If auth cannot be reached the row stays
    /// `deleting` (invisible) and the reconciler finishes later.
    async fn finish_deletion(&self, user_id: &str) {
        match self.auth.delete_credential(user_id).await {
            Ok(_) => match self.store.delete(user_id).await {
                Ok(()) => tracing::info!(%user_id, "user deleted"),
                Err(error) => tracing::warn!(%user_id, %error, "row left for the reconciler"),
            },
            Err(status) => {
                tracing::warn!(%user_id, code = ?status.code(), "credential deletion deferred to the reconciler");
            }
        }
    }

    /// ListUsers: admins only, by create time then id, with signed keyset page tokens.
    pub async fn list_users(
        &self,
        caller: &Caller,
        page_size: i32,
        page_token: &str,
    ) -> Result<(Vec<Profile>, String)> {
        if !caller.can("users.list") {
            return Err(Error::PermissionDenied("only admins may list users"));
        }
        if page_size < 0 {
            return Err(Error::invalid(
                "page_size",
                "page_size must not be negative",
            ));
        }
        let size = match page_size {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        };
        let after = if page_token.is_empty() {
            None
        } else {
            Some(self.page_tokens.decode(page_token).ok_or_else(|| {
                Error::invalid("page_token", "page_token is not one this service issued")
            })?)
        };
        let mut users = self.store.list(after, i64::from(size) + 1).await?;
        let next = if users.len() > usize::try_from(size).unwrap_or(usize::MAX) {
            users.truncate(usize::try_from(size).unwrap_or(0));
            users
                .last()
                .map(|last| self.page_tokens.encode(last.create_time, &last.id))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok((users, next))
    }

    /// Finishes what crashes and outages interrupted: abandoned sign-ups and deletions.
    pub async fn reconcile(&self) {
        let rows = match self.store.unfinished(now_micros()).await {
            Ok(rows) => rows,
            Err(error) => {
                tracing::warn!(%error, "reconciler cannot read the database");
                return;
            }
        };
        for (id, state) in rows {
            if state == State::Pending {
                match self.store.mark_deleting(&id, Some(now_micros())).await {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(error) => {
                        tracing::warn!(%error, "reconciler cannot claim a row");
                        continue;
                    }
                }
            }
            // Its calls to auth-service carry this request id, for the logs of both.
            grimos_server::with_request_id(Arc::from("reconciler"), self.finish_deletion(&id))
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_keep_microseconds() {
        let ts = timestamp(1_700_000_000_123_456);
        assert_eq!((ts.seconds, ts.nanos), (1_700_000_000, 123_456_000));
        let before = timestamp(-1);
        assert_eq!((before.seconds, before.nanos), (-1, 999_999_000));
    }
}
