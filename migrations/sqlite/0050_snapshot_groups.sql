-- EVS snapshot groups (`/v5/{project}/snapshot-groups`): the header of a set of member snapshots
-- taken together (crash-consistent) of volumes the caller names. The members are ordinary
-- snapshot rows with `snapshots.group_snapshot_id` = this id, like Cinder group snapshots, so
-- one job takes both kinds; only the header differs (no Cinder group behind it, EVS fields).
CREATE TABLE snapshot_groups (
    id                    TEXT PRIMARY KEY,
    project_id            TEXT NOT NULL,
    user_id               TEXT,
    name                  TEXT,
    description           TEXT,
    status                TEXT NOT NULL,
    server_id             TEXT,
    enterprise_project_id TEXT,
    tags                  TEXT NOT NULL DEFAULT '{}',
    created_at            TEXT NOT NULL,
    updated_at            TEXT
);
CREATE INDEX snapshot_groups_project_created ON snapshot_groups (project_id, created_at, id);
