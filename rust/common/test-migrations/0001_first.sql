-- Test migrations for open_sqlite_migrated: two steps, each fails if applied twice.
CREATE TABLE first (id INTEGER PRIMARY KEY) STRICT;
