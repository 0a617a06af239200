//! The cursor of a revocation stream, `<database id>.<seq>`: the database the revocations
//! table is in, and the row of that table a message brings the set up to. auth-service makes
//! them (`WatchRevocations` messages, and the [`CURSOR_HEADER`] of a call that revoked
//! something); other clients treat them as opaque, while user-service compares them, to know
//! whether its stream has brought the revocations a call of its own reported.

/// The response metadata in which auth-service says, after `ChangePassword`, the cursor its
/// streams reached with the sessions the change ended: a stream at or past it has them.
pub const CURSOR_HEADER: &str = "grimos-revocation-cursor";

/// The cursor of row `seq` of the table in database `database_id`.
#[must_use]
pub fn cursor(database_id: &str, seq: i64) -> String {
    format!("{database_id}.{seq}")
}

/// The database id and row of `cursor`, if it is one.
#[must_use]
pub fn parse_cursor(cursor: &str) -> Option<(&str, i64)> {
    let (id, seq) = cursor.rsplit_once('.')?;
    let seq: i64 = seq.parse().ok().filter(|seq| *seq >= 0)?;
    (!id.is_empty()).then_some((id, seq))
}

/// Whether a stream at `position` has every row up to `wanted`: both cursors of one database,
/// and `position` at or past `wanted`'s row.
#[must_use]
pub fn reached(position: &str, wanted: &str) -> bool {
    match (parse_cursor(position), parse_cursor(wanted)) {
        (Some((id, seq)), Some((wanted_id, wanted_seq))) => id == wanted_id && seq >= wanted_seq,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_and_only_well_formed_ones_parse() {
        assert_eq!(parse_cursor(&cursor("db-1.x", 42)), Some(("db-1.x", 42)));
        for bad in [
            "",
            "42",
            ".42",
            "db.",
            "db.-1",
            "db.4x",
            "db.99999999999999999999",
        ] {
            assert_eq!(parse_cursor(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn reached_needs_the_same_database_and_a_row_at_or_past() {
        assert!(reached("db.7", "db.7"));
        assert!(reached("db.8", "db.7"));
        assert!(!reached("db.6", "db.7"));
        assert!(!reached("other.9", "db.7"));
        assert!(!reached("", "db.7"));
        assert!(!reached("db.9", "garbage"));
    }
}
