-- ui: the web dashboard's server-side sessions. The browser holds a random secret in an
-- HttpOnly cookie; only its SHA-256 is stored here, so a copy of the database signs nobody in.
-- `user_id` is NULL for a noauth-mode session. A session ends at `expires_at` (absolute), after
-- the idle limit since `last_seen_at`, at sign-out (row deleted) or when revoked; its user,
-- project and roles are checked again on every request, as tokens are.
CREATE TABLE ui_sessions (
    id_hash      TEXT PRIMARY KEY,
    user_id      TEXT,
    project_id   TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    last_seen_at TEXT NOT NULL,
    expires_at   TEXT NOT NULL
);
CREATE INDEX ui_sessions_user ON ui_sessions (user_id);
CREATE INDEX ui_sessions_expires ON ui_sessions (expires_at);
