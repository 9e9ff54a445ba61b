-- cinderblock schema v1 (SQLite). Timestamps are fixed-width UTC text, which sorts correctly.
CREATE TABLE pools (
    name            TEXT PRIMARY KEY,
    provisioned_gb  BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE volume_types (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    description TEXT,
    is_public   BIGINT NOT NULL DEFAULT 1,
    created_at  TEXT NOT NULL
);

CREATE TABLE volume_type_extra_specs (
    type_id TEXT NOT NULL REFERENCES volume_types(id) ON DELETE CASCADE,
    key     TEXT NOT NULL,
    value   TEXT NOT NULL,
    PRIMARY KEY (type_id, key)
);

CREATE TABLE volumes (
    id                TEXT PRIMARY KEY,
    project_id        TEXT NOT NULL,
    user_id           TEXT,
    name              TEXT,
    description       TEXT,
    size_gb           BIGINT NOT NULL,
    status            TEXT NOT NULL,
    availability_zone TEXT NOT NULL,
    volume_type_id    TEXT NOT NULL REFERENCES volume_types(id),
    pool              TEXT NOT NULL REFERENCES pools(name),
    bootable          BIGINT NOT NULL DEFAULT 0,
    multiattach       BIGINT NOT NULL DEFAULT 0,
    readonly          BIGINT NOT NULL DEFAULT 0,
    snapshot_id       TEXT,
    source_volid      TEXT,
    created_at        TEXT NOT NULL,
    updated_at        TEXT
);
CREATE INDEX volumes_project_created ON volumes (project_id, created_at, id);
CREATE INDEX volumes_status ON volumes (status);

CREATE TABLE volume_metadata (
    volume_id TEXT NOT NULL REFERENCES volumes(id) ON DELETE CASCADE,
    key       TEXT NOT NULL,
    value     TEXT NOT NULL,
    PRIMARY KEY (volume_id, key)
);

CREATE TABLE jobs (
    id           TEXT PRIMARY KEY,
    project_id   TEXT NOT NULL,
    kind         TEXT NOT NULL,
    parent_id    TEXT REFERENCES jobs(id),
    status       TEXT NOT NULL,
    volume_id    TEXT,
    entities     TEXT NOT NULL,
    error_code   TEXT,
    fail_reason  TEXT,
    begin_time   TEXT NOT NULL,
    end_time     TEXT,
    lease_owner  TEXT,
    lease_until  BIGINT,
    attempts     BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX jobs_runnable ON jobs (status, begin_time);
CREATE INDEX jobs_parent ON jobs (parent_id);
