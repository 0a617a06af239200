//! Roles and the permissions they grant: the one table `CheckPermission`, `ValidateToken` and
//! `GetVerificationKeys` answer from. Nothing else in the system decides what a role may do:
//! user-service evaluates the table auth-service publishes, with the same code
//! ([`grimos_token::RoleTable`]).

use std::sync::LazyLock;

use grimos_token::RoleTable;

/// Every user holds this role.
pub const USER: &str = "user";
/// Accounts whose email is in `GRIMOS_ADMIN_EMAILS` at sign-up also hold this role.
pub const ADMIN: &str = "admin";

/// Role → permissions. `admin` holds those of `user` too.
const TABLE: &[(&str, &[&str])] = &[
    (
        USER,
        &["users.read.self", "users.update.self", "users.delete.self"],
    ),
    (
        ADMIN,
        &[
            "users.read.self",
            "users.update.self",
            "users.delete.self",
            "users.list",
            "users.read",
            "users.update",
            "users.delete",
        ],
    ),
];

static ROLE_TABLE: LazyLock<RoleTable> = LazyLock::new(|| {
    RoleTable::new(
        TABLE
            .iter()
            .map(|(role, perms)| (*role, perms.iter().copied())),
    )
});

/// The role table.
pub fn table() -> &'static RoleTable {
    &ROLE_TABLE
}

/// Every permission the roles grant, sorted, without duplicates. Unknown roles grant none.
pub fn permissions<S: AsRef<str>>(roles: &[S]) -> Vec<&'static str> {
    table().permissions(roles)
}

/// Whether the roles grant `permission`.
pub fn allows<S: AsRef<str>>(roles: &[S], permission: &str) -> bool {
    table().allows(roles, permission)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_act_on_themselves_and_admins_on_everyone() {
        assert!(allows(&[USER], "users.read.self"));
        assert!(!allows(&[USER], "users.list"));
        assert!(allows(&[USER, ADMIN], "users.list"));
        assert!(allows(&[ADMIN], "users.delete.self"));
        assert!(!allows(&["intruder"], "users.read.self"));
        assert_eq!(
            permissions(&[USER]),
            ["users.delete.self", "users.read.self", "users.update.self"]
        );
        assert_eq!(permissions(&[USER, ADMIN]).len(), 7);
    }
}
