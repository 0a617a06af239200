//! Roles and the permissions they grant: the one table `CheckPermission` and
//! `ValidateToken` answer from. Nothing else in the system decides what a role may do.

/// Every user holds this role.
pub const USER: &str = "user";
/// Accounts whose email is in `GRIMOS_ADMIN_EMAILS` at sign-up also hold this role.
pub const ADMIN: &str = "admin";

/// Role → permissions. `admin` holds its own and, by [`permissions`], those of `user`.
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

/// Every permission the roles grant, sorted, without duplicates. Unknown roles grant none.
pub fn permissions<S: AsRef<str>>(roles: &[S]) -> Vec<&'static str> {
    let mut granted: Vec<&'static str> = TABLE
        .iter()
        .filter(|(role, _)| roles.iter().any(|r| r.as_ref() == *role))
        .flat_map(|(_, perms)| perms.iter().copied())
        .collect();
    granted.sort_unstable();
    granted.dedup();
    granted
}

/// Whether the roles grant `permission`.
pub fn allows<S: AsRef<str>>(roles: &[S], permission: &str) -> bool {
    TABLE
        .iter()
        .filter(|(role, _)| roles.iter().any(|r| r.as_ref() == *role))
        .any(|(_, perms)| perms.contains(&permission))
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
