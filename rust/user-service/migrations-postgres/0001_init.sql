-- user-service schema on PostgreSQL: the same tables, columns and index as the SQLite schema
-- (migrations/0001_init.sql). Times are Unix microseconds (UTC).

-- Profiles. A profile is visible (GetUser, ListUsers, ...) only once 'active', which it
-- becomes only after auth-service stored the credential, so no visible profile ever lacks
-- a credential. 'pending' rows are sign-ups in flight: lease_until says until when the
-- request that made the row owns it; after that, a retry or the reconciler may clean up.
-- 'deleting' rows are deletions in flight, finished by the reconciler after a crash.
-- id is compared byte-wise (COLLATE "C", as SQLite's BINARY), so ListUsers orders ties of
-- create_time by id the same way on both backends, whatever the database's collation.
CREATE TABLE users (
    id           TEXT COLLATE "C" PRIMARY KEY,
    email        TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    roles        TEXT NOT NULL DEFAULT '', -- comma-separated, as granted by auth-service
    state        TEXT NOT NULL CHECK (state IN ('pending', 'active', 'deleting')),
    create_time  BIGINT NOT NULL,
    update_time  BIGINT NOT NULL,
    lease_until  BIGINT
);

-- ListUsers walks active users by (create_time, id) with keyset pagination.
CREATE INDEX users_by_create_time ON users (create_time, id) WHERE state = 'active';

-- Server secrets that must survive restarts and be shared by replicas (the page-token key).
CREATE TABLE secrets (
    name  TEXT PRIMARY KEY,
    value BYTEA NOT NULL
);
