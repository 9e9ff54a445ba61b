-- Attachments: one row per (volume, consumer). A row with connection_info is exported (NBD or a
-- loop device) and is exported again at every start.
CREATE TABLE attachments (
    id              TEXT PRIMARY KEY,
    volume_id       TEXT NOT NULL REFERENCES volumes(id),
    project_id      TEXT NOT NULL,
    instance_uuid   TEXT,
    attached_host   TEXT,
    mountpoint      TEXT,
    attach_mode     TEXT NOT NULL DEFAULT 'rw',
    attach_status   TEXT NOT NULL,
    connector       TEXT,
    connection_info TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT,
    attach_time     TEXT
);
CREATE INDEX attachments_volume ON attachments (volume_id);
CREATE INDEX attachments_project ON attachments (project_id, created_at, id);
