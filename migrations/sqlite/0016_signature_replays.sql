-- AK/SK replay cache: the signatures of state-changing signed requests seen within the
-- signing window (X-Sdk-Date ± auth.signature_max_skew_seconds). A signature is claimed once;
-- a second request carrying it is a replay and is refused. Rows past `expires_at` can no longer
-- verify (their date is stale) and are purged as new ones are claimed. One table, so several
-- nodes on one PostgreSQL share the cache.
CREATE TABLE signature_replays (
    signature  TEXT PRIMARY KEY,
    expires_at TEXT NOT NULL
);
CREATE INDEX signature_replays_expires ON signature_replays (expires_at);
