-- Snapshots, snapshot metadata, tags on volumes and snapshots, EVS idempotency tokens, job payloads.
CREATE TABLE snapshots (
    id          TEXT COLLATE "C" PRIMARY KEY,
    project_id  TEXT NOT NULL,
    user_id     TEXT,
    volume_id   TEXT NOT NULL REFERENCES volumes(id),
    name        TEXT COLLATE "C",
    description TEXT,
    size_gb     BIGINT NOT NULL,
    status      TEXT COLLATE "C" NOT NULL,
    pool        TEXT NOT NULL REFERENCES pools(name),
    created_at  TEXT COLLATE "C" NOT NULL,
    updated_at  TEXT
);
CREATE INDEX snapshots_project_created ON snapshots (project_id, created_at, id);
CREATE INDEX snapshots_volume ON snapshots (volume_id);

CREATE TABLE snapshot_metadata (
    snapshot_id TEXT NOT NULL REFERENCES snapshots(id) ON DELETE CASCADE,
    key         TEXT NOT NULL,
    value       TEXT NOT NULL,
    PRIMARY KEY (snapshot_id, key)
);

CREATE TABLE tags (
    resource_type TEXT NOT NULL,
    resource_id   TEXT NOT NULL,
    project_id    TEXT NOT NULL,
    key           TEXT NOT NULL,
    value         TEXT NOT NULL,
    PRIMARY KEY (resource_type, resource_id, key)
);
CREATE INDEX tags_project ON tags (project_id, resource_type, key);

CREATE TABLE client_tokens (
    project_id TEXT NOT NULL,
    token      TEXT NOT NULL,
    job_id     TEXT NOT NULL,
    response   TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (project_id, token)
);

ALTER TABLE jobs ADD COLUMN payload TEXT;
ALTER TABLE jobs ADD COLUMN snapshot_id TEXT;
CREATE INDEX jobs_snapshot ON jobs (snapshot_id);
