-- evs: the EVS create fields a disk keeps (reference 6.1.1 and the SDK's CreateVolumeOption):
-- its enterprise project (NULL = the default project "0"), the pool a
-- `dedicated_storage_id` scheduler hint named (NULL = placed by the scheduler), and the IOPS
-- and throughput (MiB/s) asked for at create, enforced as the volume's own back-end QoS next
-- to its type's.
ALTER TABLE volumes ADD COLUMN enterprise_project_id TEXT;
ALTER TABLE volumes ADD COLUMN dedicated_storage_id TEXT;
ALTER TABLE volumes ADD COLUMN qos_iops BIGINT;
ALTER TABLE volumes ADD COLUMN qos_throughput BIGINT;
