-- Cinder generic volume groups: group types with their group specs, groups (a set of volume
-- types, and the volumes that joined), and group snapshots (one member snapshot per volume).
-- Tables are named volume_groups/... because GROUPS is an SQL keyword.
CREATE TABLE group_types (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    description TEXT,
    is_public   BIGINT NOT NULL DEFAULT 1,
    created_at  TEXT NOT NULL
);

CREATE TABLE group_type_specs (
    type_id TEXT NOT NULL REFERENCES group_types(id) ON DELETE CASCADE,
    key     TEXT NOT NULL,
    value   TEXT NOT NULL,
    PRIMARY KEY (type_id, key)
);

CREATE TABLE volume_groups (
    id                TEXT PRIMARY KEY,
    project_id        TEXT NOT NULL,
    user_id           TEXT,
    name              TEXT,
    description       TEXT,
    status            TEXT NOT NULL,
    availability_zone TEXT NOT NULL,
    group_type_id     TEXT NOT NULL REFERENCES group_types(id),
    group_snapshot_id TEXT,
    source_group_id   TEXT,
    created_at        TEXT NOT NULL,
    updated_at        TEXT
);
CREATE INDEX volume_groups_project_created ON volume_groups (project_id, created_at, id);

CREATE TABLE volume_group_types (
    group_id       TEXT NOT NULL REFERENCES volume_groups(id) ON DELETE CASCADE,
    volume_type_id TEXT NOT NULL REFERENCES volume_types(id),
    position       BIGINT NOT NULL,
    PRIMARY KEY (group_id, volume_type_id)
);

CREATE TABLE group_snapshots (
    id            TEXT PRIMARY KEY,
    project_id    TEXT NOT NULL,
    user_id       TEXT,
    group_id      TEXT NOT NULL REFERENCES volume_groups(id),
    group_type_id TEXT NOT NULL,
    name          TEXT,
    description   TEXT,
    status        TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT
);
CREATE INDEX group_snapshots_project_created ON group_snapshots (project_id, created_at, id);
CREATE INDEX group_snapshots_group ON group_snapshots (group_id);

ALTER TABLE volumes ADD COLUMN group_id TEXT;
CREATE INDEX volumes_group ON volumes (group_id);
ALTER TABLE snapshots ADD COLUMN group_snapshot_id TEXT;
CREATE INDEX snapshots_group_snapshot ON snapshots (group_snapshot_id);
