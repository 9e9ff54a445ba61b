-- Progress of a running job's storage step (full copies, image conversions, uploads), in the
-- units its reporter chose; both NULL until it reports. Written by the runner about once a
-- second while the job runs.
ALTER TABLE jobs ADD COLUMN progress_done BIGINT;
ALTER TABLE jobs ADD COLUMN progress_total BIGINT;
