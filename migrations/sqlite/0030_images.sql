-- images: the built-in Glance v2 image service (issue 13). One row per image; its file lives in
-- the pool named by `pool` (`images/<id>.img`), on the node named by `node`. Custom properties
-- and tags are JSON text (an object of strings, an array of strings).
CREATE TABLE images (
    id               TEXT PRIMARY KEY,
    owner            TEXT NOT NULL,
    name             TEXT,
    status           TEXT NOT NULL,
    disk_format      TEXT,
    container_format TEXT,
    size             BIGINT,
    virtual_size     BIGINT,
    checksum         TEXT,
    os_hash_algo     TEXT,
    os_hash_value    TEXT,
    visibility       TEXT NOT NULL,
    protected        BIGINT NOT NULL DEFAULT 0,
    os_hidden        BIGINT NOT NULL DEFAULT 0,
    min_disk         BIGINT NOT NULL DEFAULT 0,
    min_ram          BIGINT NOT NULL DEFAULT 0,
    pool             TEXT NOT NULL,
    node             TEXT NOT NULL,
    properties       TEXT NOT NULL DEFAULT '{}',
    tags             TEXT NOT NULL DEFAULT '[]',
    job_id           TEXT,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL
);
CREATE INDEX images_owner ON images (owner);

-- Cinder's volume_image_metadata: the image a volume was made from (image_id, image_name,
-- checksum, disk_format…), and what os-set_image_metadata adds.
CREATE TABLE volume_image_metadata (
    volume_id TEXT NOT NULL,
    key       TEXT NOT NULL,
    value     TEXT NOT NULL,
    PRIMARY KEY (volume_id, key)
);
