//! What a token's roles grant, evaluated over a role table it is given: auth-service's own
//! table there, the table auth-service publishes in user-service. This module holds no table
//! of its own; auth-service owns the only one.

/// Role → permissions. A role not listed grants none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleTable {
    rows: Vec<(String, Vec<String>)>,
}

impl RoleTable {
    /// The table of these `(role, permissions)` rows.
    pub fn new<R, P, I>(rows: impl IntoIterator<Item = (R, I)>) -> Self
    where
        R: Into<String>,
        P: Into<String>,
        I: IntoIterator<Item = P>,
    {
        Self {
            rows: rows
                .into_iter()
                .map(|(role, permissions)| {
                    (
                        role.into(),
                        permissions.into_iter().map(Into::into).collect(),
                    )
                })
                .collect(),
        }
    }

    /// The rows, in the order given.
    pub fn rows(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.rows
            .iter()
            .map(|(role, permissions)| (role.as_str(), permissions.as_slice()))
    }

    /// The rows of the roles held.
    fn held<S: AsRef<str>>(&self, roles: &[S]) -> impl Iterator<Item = &(String, Vec<String>)> {
        self.rows
            .iter()
            .filter(|(role, _)| roles.iter().any(|r| r.as_ref() == role))
    }

    /// Every permission the roles grant, sorted, without duplicates. Unknown roles grant none.
    pub fn permissions<S: AsRef<str>>(&self, roles: &[S]) -> Vec<&str> {
        let mut granted: Vec<&str> = self
            .rows
            .iter()
            .filter(|(role, _)| roles.iter().any(|r| r.as_ref() == role))
            .flat_map(|(_, permissions)| permissions.iter().map(String::as_str))
            .collect();
        granted.sort_unstable();
        granted.dedup();
        granted
    }

    /// Whether the roles grant `permission`.
    pub fn allows<S: AsRef<str>>(&self, roles: &[S], permission: &str) -> bool {
        self.held(roles)
            .any(|(_, permissions)| permissions.iter().any(|p| p == permission))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_grant_the_union_of_their_rows_and_unknown_roles_nothing() {
        let table = RoleTable::new([
            ("user", vec!["read.self", "update.self"]),
            ("admin", vec!["read.self", "list"]),
        ]);
        assert!(table.allows(&["user"], "read.self"));
        assert!(!table.allows(&["user"], "list"));
        assert!(table.allows(&["user", "admin"], "list"));
        assert!(!table.allows(&["intruder"], "read.self"));
        assert!(!table.allows::<&str>(&[], "read.self"));
        assert!(!table.allows(&["user"], ""));
        assert_eq!(
            table.permissions(&["admin", "user"]),
            ["list", "read.self", "update.self"]
        );
        assert!(table.permissions(&["intruder"]).is_empty());
        assert!(RoleTable::default().permissions(&["user"]).is_empty());
        let rows: Vec<_> = table.rows().map(|(role, p)| (role, p.len())).collect();
        assert_eq!(rows, [("user", 2), ("admin", 2)]);
    }
}
