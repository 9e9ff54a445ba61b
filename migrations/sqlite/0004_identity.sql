-- Built-in identity: projects, users (argon2 password hashes), role assignments, AK/SK
-- credentials (secret keys encrypted with the key file beside the database) and tokens (stored
-- as SHA-256 hashes). Deleting a user or a project removes its assignments, credentials and
-- tokens.
CREATE TABLE projects (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    description TEXT,
    enabled     BIGINT NOT NULL DEFAULT 1,
    created_at  TEXT NOT NULL
);

CREATE TABLE users (
    id                 TEXT PRIMARY KEY,
    name               TEXT NOT NULL UNIQUE,
    password_hash      TEXT NOT NULL,
    default_project_id TEXT REFERENCES projects(id) ON DELETE SET NULL,
    enabled            BIGINT NOT NULL DEFAULT 1,
    created_at         TEXT NOT NULL
);

CREATE TABLE role_assignments (
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    role       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (user_id, project_id, role)
);
CREATE INDEX role_assignments_project ON role_assignments (project_id);

CREATE TABLE credentials (
    access_key  TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    project_id  TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    secret_enc  TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE INDEX credentials_user ON credentials (user_id);

CREATE TABLE tokens (
    token_hash TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    project_id TEXT REFERENCES projects(id) ON DELETE CASCADE,
    methods    TEXT NOT NULL,
    audit_id   TEXT NOT NULL,
    issued_at  TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE INDEX tokens_expires ON tokens (expires_at);
CREATE INDEX tokens_user ON tokens (user_id);
