-- The identity of this database, as in migrations/0002_database_identity.sql (SQLite):
-- WatchRevocations puts it in its cursors, so that a cursor from another database is told
-- apart and answered with the whole set.
CREATE TABLE database_identity (
    id TEXT NOT NULL
);

INSERT INTO database_identity (id) VALUES (md5(random()::text || clock_timestamp()::text));
