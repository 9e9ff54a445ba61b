-- QoS specs (Cinder's `quality_of_service_specs`): a named set of key/value specs with a
-- consumer (`front-end`, `back-end`, `both`), and the volume types associated with one (a type
-- has at most one; Cinder keeps that as `volume_types.qos_specs_id`). Stored and shown only.
CREATE TABLE qos_specs (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    consumer   TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT
);

-- A NULL value is a key set to null (Cinder's set schema allows it).
CREATE TABLE qos_specs_keys (
    qos_specs_id TEXT NOT NULL REFERENCES qos_specs(id) ON DELETE CASCADE,
    key          TEXT NOT NULL,
    value        TEXT,
    PRIMARY KEY (qos_specs_id, key)
);

CREATE TABLE volume_type_qos_specs (
    type_id      TEXT PRIMARY KEY REFERENCES volume_types(id) ON DELETE CASCADE,
    qos_specs_id TEXT NOT NULL REFERENCES qos_specs(id),
    created_at   TEXT NOT NULL
);

CREATE INDEX volume_type_qos_specs_by_qos ON volume_type_qos_specs (qos_specs_id);
