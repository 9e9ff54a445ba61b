-- Volume type encryption records (Cinder's `encryption` table; records only, no keys) and
-- each project's default volume type (Cinder 3.62 `default-types`).
CREATE TABLE volume_type_encryption (
    type_id          TEXT PRIMARY KEY REFERENCES volume_types(id) ON DELETE CASCADE,
    encryption_id    TEXT NOT NULL,
    provider         TEXT NOT NULL,
    cipher           TEXT,
    key_size         BIGINT,
    control_location TEXT NOT NULL,
    created_at       TEXT NOT NULL,
    updated_at       TEXT
);

CREATE TABLE default_volume_types (
    project_id     TEXT PRIMARY KEY,
    volume_type_id TEXT NOT NULL REFERENCES volume_types(id),
    created_at     TEXT NOT NULL,
    updated_at     TEXT
);
