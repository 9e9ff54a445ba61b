-- Quotas (per-project limits over per-class defaults over the config), a per-project lock row
-- that serialises quota checks, and volume transfers (auth keys stored salted and hashed).
CREATE TABLE quotas (
    project_id TEXT NOT NULL,
    resource   TEXT NOT NULL,
    hard_limit BIGINT NOT NULL,
    PRIMARY KEY (project_id, resource)
);

CREATE TABLE quota_classes (
    class_name TEXT NOT NULL,
    resource   TEXT NOT NULL,
    hard_limit BIGINT NOT NULL,
    PRIMARY KEY (class_name, resource)
);

CREATE TABLE project_locks (
    project_id TEXT PRIMARY KEY,
    n          BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE transfers (
    id                     TEXT COLLATE "C" PRIMARY KEY,
    volume_id              TEXT NOT NULL REFERENCES volumes(id),
    project_id             TEXT NOT NULL,
    name                   TEXT,
    salt                   TEXT NOT NULL,
    key_hash               TEXT NOT NULL,
    no_snapshots           BIGINT NOT NULL DEFAULT 0,
    accepted               BIGINT NOT NULL DEFAULT 0,
    destination_project_id TEXT,
    created_at             TEXT COLLATE "C" NOT NULL
);
CREATE INDEX transfers_project ON transfers (project_id, created_at, id);
CREATE INDEX transfers_volume ON transfers (volume_id);
