-- Private volume types: the projects allowed to see and use each one.
CREATE TABLE volume_type_access (
    type_id    TEXT NOT NULL REFERENCES volume_types(id) ON DELETE CASCADE,
    project_id TEXT NOT NULL,
    PRIMARY KEY (type_id, project_id)
);
