-- auth-service schema. Times are Unix seconds (UTC).

-- One credential per user: the email they log in with, an Argon2id PHC hash, their roles.
CREATE TABLE credentials (
    user_id       TEXT PRIMARY KEY NOT NULL,
    email         TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    roles         TEXT NOT NULL, -- comma-separated, for example 'user,admin'
    create_time   INTEGER NOT NULL
) STRICT;

-- A session is one login: the family of refresh tokens rotated from it. Its expire_time is
-- absolute (AUTH_REFRESH_TOKEN_TTL after the login) and does not move on refresh.
CREATE TABLE sessions (
    id          TEXT PRIMARY KEY NOT NULL,
    user_id     TEXT NOT NULL REFERENCES credentials (user_id) ON DELETE CASCADE,
    create_time INTEGER NOT NULL,
    expire_time INTEGER NOT NULL,
    revoke_time INTEGER
) STRICT;
CREATE INDEX sessions_by_user ON sessions (user_id);

-- Refresh tokens are stored only as SHA-256 digests. use_time is set when a token is
-- rotated; presenting it again is reuse and revokes the session.
CREATE TABLE refresh_tokens (
    token_hash BLOB PRIMARY KEY NOT NULL,
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    issue_time INTEGER NOT NULL,
    use_time   INTEGER
) STRICT;
CREATE INDEX refresh_tokens_by_session ON refresh_tokens (session_id);

-- Revocations of access tokens, append-only: every replica loads them at start and polls
-- for new rows by seq, so validation never reads the database. kind is 'token' (subject is
-- a jti), 'session' (a session id) or 'user' (a user id: tokens issued at or before
-- revoke_time). A row is purged once expire_time has passed: no token it matches can still
-- be valid then.
CREATE TABLE revocations (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    kind        TEXT NOT NULL,
    subject     TEXT NOT NULL,
    revoke_time INTEGER NOT NULL,
    expire_time INTEGER NOT NULL
) STRICT;

-- Login attempts per email in the current throttling window. Every attempt is counted
-- before its password is checked, so parallel attempts cannot slip past the limit.
CREATE TABLE login_attempts (
    email        TEXT PRIMARY KEY NOT NULL,
    attempts     INTEGER NOT NULL,
    window_start INTEGER NOT NULL
) STRICT;
