-- actions: snapshot progress (os-update_snapshot_status), volume migration status (retype
-- with migration) and Cinder's user messages (3.3), recorded when an asynchronous operation fails.
ALTER TABLE snapshots ADD COLUMN progress TEXT;
ALTER TABLE volumes ADD COLUMN migration_status TEXT;

CREATE TABLE messages (
    id            TEXT PRIMARY KEY,
    project_id    TEXT NOT NULL,
    request_id    TEXT NOT NULL,
    resource_type TEXT,
    resource_uuid TEXT,
    event_id      TEXT NOT NULL,
    action_id     TEXT NOT NULL,
    detail_id     TEXT NOT NULL,
    message_level TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    expires_at    TEXT NOT NULL
);
CREATE INDEX messages_project ON messages (project_id, created_at);
