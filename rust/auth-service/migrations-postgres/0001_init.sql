-- auth-service schema on PostgreSQL: the same tables as migrations/0001_init.sql (SQLite).
-- Times are Unix seconds (UTC).

-- One credential per user: the email they log in with, an Argon2id PHC hash, their roles.
CREATE TABLE credentials (
    user_id       TEXT PRIMARY KEY NOT NULL,
    email         TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    roles         TEXT NOT NULL, -- comma-separated, for example 'user,admin'
    create_time   BIGINT NOT NULL
);

-- A session is one login: the family of refresh tokens rotated from it. Its expire_time is
-- absolute (AUTH_REFRESH_TOKEN_TTL after the login) and does not move on refresh.
CREATE TABLE sessions (
    id          TEXT PRIMARY KEY NOT NULL,
    user_id     TEXT NOT NULL REFERENCES credentials (user_id) ON DELETE CASCADE,
    create_time BIGINT NOT NULL,
    expire_time BIGINT NOT NULL,
    revoke_time BIGINT
);
CREATE INDEX sessions_by_user ON sessions (user_id);

-- Refresh tokens are stored only as SHA-256 digests. use_time is set when a token is
-- rotated; presenting it again is reuse and revokes the session.
CREATE TABLE refresh_tokens (
    token_hash BYTEA PRIMARY KEY NOT NULL,
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    issue_time BIGINT NOT NULL,
    use_time   BIGINT
);
CREATE INDEX refresh_tokens_by_session ON refresh_tokens (session_id);

-- Revocations of access tokens, append-only: every replica loads them at start and polls
-- for new rows by seq, so validation never reads the database. kind is 'token' (subject is
-- a jti), 'session' (a session id) or 'user' (a user id: tokens issued at or before
-- revoke_time). A row is purged once expire_time has passed: no token it matches can still
-- be valid then. Writers insert under a transaction-scoped advisory lock, so rows become
-- visible in seq order and a poller that has seen seq N never misses a row below N.
CREATE TABLE revocations (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind        TEXT NOT NULL,
    subject     TEXT NOT NULL,
    revoke_time BIGINT NOT NULL,
    expire_time BIGINT NOT NULL
);

-- Login attempts per email in the current throttling window. Every attempt is counted
-- before its password is checked, so parallel attempts cannot slip past the limit.
CREATE TABLE login_attempts (
    email        TEXT PRIMARY KEY NOT NULL,
    attempts     BIGINT NOT NULL,
    window_start BIGINT NOT NULL
);
