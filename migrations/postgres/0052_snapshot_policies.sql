-- EVS auto-snapshot policies (`/v5/{project}/snapshot-policies`): a schedule (weekdays or every N
-- days, at whole hours in the configured time zone), a retention in days, and the volumes it
-- covers. `last_due` is the schedule time (unix seconds of the policy clock) of the last run
-- taken; the scheduler moves it forward with a compare-and-set in the transaction that queues
-- the run's snapshots, so a run is taken once whatever restarts in between.
CREATE TABLE snapshot_policies (
    id                    TEXT PRIMARY KEY,
    project_id            TEXT NOT NULL,
    name                  TEXT NOT NULL,
    repeat_weekdays       TEXT NOT NULL,
    repeat_interval_days  BIGINT,
    time_points           TEXT NOT NULL,
    retention_days        BIGINT NOT NULL,
    tags                  TEXT NOT NULL,
    enterprise_project_id TEXT,
    last_due              BIGINT NOT NULL,
    created_at            TEXT NOT NULL,
    updated_at            TEXT
);
CREATE INDEX snapshot_policies_project ON snapshot_policies (project_id, created_at, id);

CREATE TABLE snapshot_policy_volumes (
    policy_id TEXT NOT NULL,
    volume_id TEXT NOT NULL,
    PRIMARY KEY (policy_id, volume_id)
);
CREATE INDEX snapshot_policy_volumes_volume ON snapshot_policy_volumes (volume_id);

-- Snapshots a policy took, with the schedule time of their run (retention counts from it).
CREATE TABLE auto_snapshots (
    snapshot_id TEXT PRIMARY KEY,
    policy_id   TEXT NOT NULL,
    due         BIGINT NOT NULL
);
CREATE INDEX auto_snapshots_policy ON auto_snapshots (policy_id, due);
