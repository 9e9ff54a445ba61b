-- Cinder's `services` table: one row per service this deployment runs, `cinder-scheduler` on
-- the node (`host` = node name) and one `cinder-volume` per pool (`host` = `node@pool`).
-- Rows are registered at start; an admin disables (with a reason), enables, freezes and thaws
-- them through os-services. A disabled cinder-volume row is a pool new volumes are not placed on.
CREATE TABLE services (
    host              TEXT NOT NULL,
    binary_name       TEXT NOT NULL,
    availability_zone TEXT NOT NULL,
    disabled          BIGINT NOT NULL DEFAULT 0,
    disabled_reason   TEXT,
    frozen            BIGINT NOT NULL DEFAULT 0,
    created_at        TEXT NOT NULL,
    updated_at        TEXT,
    PRIMARY KEY (host, binary_name)
);
