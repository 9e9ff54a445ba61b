//! EVS response bodies: the Cinder volume fields plus the EVS extras (reference 6.1.2/6.1.5).

use serde_json::{json, Map, Value};

use crate::api::cinder::views_shared::{host_of, links_for};
use crate::model::{Job, Volume};
use crate::service::JobView;

/// A stable 32-hex-digit WWN derived from the volume id (used as the disk's SCSI identifier).
pub fn wwn(id: &str) -> String {
    let hex: String = id.chars().filter(char::is_ascii_hexdigit).collect();
    format!("688860300{}", &hex[..hex.len().min(23)])
}

/// The full EVS disk body.
pub fn volume_detail(base: &str, node: &str, v: &Volume) -> Value {
    let mut o = Map::new();
    let mut put = |k: &str, val: Value| {
        o.insert(k.to_string(), val);
    };
    put("id", json!(v.id));
    put("links", links_for(base, "v2", &v.project_id, "volumes", &v.id));
    put("name", json!(v.name));
    put("status", json!(v.status.as_str()));
    put("attachments", crate::api::cinder::views_shared::volume_attachments(v));
    put("availability_zone", json!(v.availability_zone));
    put("os-vol-host-attr:host", json!(host_of(node, v)));
    put("source_volid", json!(v.source_volid));
    put("snapshot_id", json!(v.snapshot_id));
    put("description", json!(v.description));
    put("os-vol-tenant-attr:tenant_id", json!(v.project_id));
    put("volume_image_metadata", json!(v.image_metadata));
    put("created_at", json!(v.created_at));
    put("updated_at", json!(v.updated_at));
    put("volume_type", json!(v.volume_type_name));
    put("size", json!(v.size_gb));
    put("consistencygroup_id", Value::Null);
    put("bootable", json!(if v.bootable { "true" } else { "false" }));
    put("metadata", json!(v.metadata));
    put("encrypted", json!(v.encrypted));
    put("replication_status", json!("disabled"));
    put("os-vol-mig-status-attr:migstat", Value::Null);
    put("os-vol-mig-status-attr:name_id", Value::Null);
    put("os-volume-replication:extended_status", Value::Null);
    put("os-volume-replication:driver_data", Value::Null);
    put("storage_cluster_id", Value::Null);
    put("shareable", json!(if v.multiattach { "true" } else { "false" }));
    put("multiattach", json!(v.multiattach));
    put("user_id", json!(v.user_id));
    put("service_type", json!("EVS"));
    // evs: a disk placed by a `dedicated_storage_id` hint names its pool (id and name alike).
    put("dedicated_storage_id", json!(v.evs.dedicated_storage_id));
    put("dedicated_storage_name", json!(v.evs.dedicated_storage_id));
    put("tags", json!(v.tags));
    put("wwn", json!(wwn(&v.id)));
    put("enterprise_project_id", json!(v.evs.enterprise_project_id.as_deref().unwrap_or("0")));
    // The serial a consumer sees (Nova gives a volume's disk its id as serial).
    put("serial_number", json!(v.id));
    // evs: the IOPS and throughput asked for at create (the SDK's `Iops`/`Throughput`).
    if let Some(i) = v.evs.qos_iops {
        put("iops", json!({"id": format!("{}-iops", v.id), "total_val": i, "frozened": false}));
    }
    if let Some(t) = v.evs.qos_throughput {
        put("throughput", json!({"id": format!("{}-throughput", v.id), "total_val": t, "frozened": false}));
    }
    Value::Object(o)
}

/// `id`, `links`, `name`: the deprecated list entry.
pub fn volume_summary(base: &str, v: &Volume) -> Value {
    json!({"id": v.id, "links": links_for(base, "v2", &v.project_id, "volumes", &v.id), "name": v.name})
}

fn job_body(j: &Job, sub_jobs: Option<Vec<Value>>) -> Value {
    let mut entities: Map<String, Value> = serde_json::from_str(&j.entities).unwrap_or_default();
    if let Some(subs) = sub_jobs {
        entities.insert("sub_jobs".into(), Value::Array(subs));
    }
    // How far a long storage step is (full clone, migration, image conversion, upload): a
    // cinderblock addition to the job's entities, whose content the reference leaves per kind.
    if j.status == crate::model::JobStatus::Running {
        if let Some(p) = j.progress_percent() {
            entities.insert("progress".into(), Value::String(format!("{p}%")));
        }
    }
    json!({
        "status": j.status.as_str(),
        "entities": entities,
        "job_id": j.id,
        "job_type": j.kind.as_str(),
        "begin_time": evs_time(&j.begin_time),
        "end_time": j.end_time.as_deref().map(evs_time).unwrap_or_default(),
        "error_code": j.error_code,
        "fail_reason": j.fail_reason,
    })
}

/// `2016-03-08T07:40:13.219Z`: jobs print milliseconds and a `Z`.
fn evs_time(ts: &str) -> String {
    match ts.split_once('.') {
        Some((secs, frac)) => format!("{secs}.{:0<3.3}Z", frac),
        None => format!("{ts}.000Z"),
    }
}

/// A job with sub-jobs (batches list theirs; single jobs carry an empty list, as the SDK shows).
pub fn job(view: &JobView) -> Value {
    let subs = view.sub_jobs.iter().map(|s| job_body(s, None)).collect();
    job_body(&view.job, Some(subs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_wwn() {
        assert_eq!(evs_time("2016-03-08T07:40:13.219123"), "2016-03-08T07:40:13.219Z");
        assert_eq!(evs_time("2016-03-08T07:40:13"), "2016-03-08T07:40:13.000Z");
        assert_eq!(wwn("b104b8db-170d-441b-897a-3c8ba9c5a214").len(), 32);
    }
}
