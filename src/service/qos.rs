//! QoS specs (Cinder's `qos-specs` extension, admin-only): create, list, show, delete (refused
//! while a volume type is associated unless forced), set and delete keys, and associate volume
//! types (at most one record per type).
//!
//! Specs with consumer `back-end` or `both` are enforced by our NBD server on every NBD export
//! of a volume of an associated type (token buckets, `export::nbd::qos`), applied when the
//! export is made, after a restart, and to live exports whenever specs or associations change.
//! Loop-device attachments are not throttled (the kernel reads the file directly). Every input
//! is checked before the one transaction that writes, so a refused call changes nothing.

use std::collections::BTreeMap;

use super::{Caller, Services};
use crate::error::{Error, ErrorKind, Result};
use crate::export::nbd::QosLimits;
use crate::model::{now_timestamp, QosAssociation, QosSpecs, DEFAULT_QOS_CONSUMER, QOS_CONSUMERS};
use crate::store::QosWrite;

/// Longest key, value and name (Cinder's schema and `validate_dictionary_string_length`).
const MAX_TEXT: usize = 255;

fn forbidden() -> Error {
    Error::new(ErrorKind::Forbidden, "Policy doesn't allow managing QoS specs; it is admin-only.").with_code("EVS.5403")
}

fn bad(m: impl Into<String>) -> Error {
    Error::invalid("EVS.5400", m)
}

fn no_specs(id: &str) -> Error {
    Error::not_found(format!("No such QoS spec {id}."))
}

fn no_type(id: &str) -> Error {
    Error::not_found(format!("Volume type {id} could not be found."))
}

fn check_consumer(c: &str) -> Result<()> {
    if QOS_CONSUMERS.contains(&c) {
        return Ok(());
    }
    Err(bad(format!("Invalid qos specs: Valid consumer of QoS specs are: {QOS_CONSUMERS:?}")))
}

/// Keys of 1 to 255 characters (for a set, also of Cinder's set schema's characters,
/// `^[a-zA-Z0-9-_:. /]{1,255}$`), values up to 255.
fn check_specs(specs: &BTreeMap<String, Option<String>>, set_schema: bool) -> Result<()> {
    for (k, v) in specs {
        let key_ok = !k.is_empty()
            && k.chars().count() <= MAX_TEXT
            && (!set_schema || k.chars().all(|c| c.is_ascii_alphanumeric() || "-_:. /".contains(c)));
        if !key_ok {
            return Err(bad(format!("Invalid input received: Key \"{k}\" is not a valid QoS specs key.")));
        }
        if v.as_ref().is_some_and(|v| v.chars().count() > MAX_TEXT) {
            return Err(bad(format!(
                "Invalid input received: Value for key \"{k}\" has a length greater than {MAX_TEXT}."
            )));
        }
    }
    Ok(())
}

/// Split `consumer` off a create or set body's specs (Cinder keeps it as its own field).
fn take_consumer(specs: &mut BTreeMap<String, Option<String>>) -> Result<Option<String>> {
    match specs.remove("consumer") {
        None => Ok(None),
        Some(None) => Err(bad("Invalid qos specs: consumer must not be null.")),
        Some(Some(c)) => {
            check_consumer(&c)?;
            Ok(Some(c))
        }
    }
}

/// evs: tighten a type's limits by a volume's own `iops` (total IOPS) and `throughput`
/// (MiB/s of total bandwidth), each with a one-second burst.
pub(super) fn with_volume_limits(mut l: QosLimits, evs: &crate::model::VolumeEvs) -> QosLimits {
    fn tighter(cur: Option<(f64, f64)>, rate: f64) -> Option<(f64, f64)> {
        match cur {
            Some((r, b)) if r <= rate => Some((r, b)),
            _ => Some((rate, rate)),
        }
    }
    if let Some(i) = evs.qos_iops {
        l.total_iops = tighter(l.total_iops, i as f64);
    }
    if let Some(t) = evs.qos_throughput {
        l.total_bytes = tighter(l.total_bytes, t as f64 * 1024.0 * 1024.0);
    }
    l
}

impl Services {
    fn qos_admin(&self, caller: &Caller) -> Result<()> {
        if caller.is_admin {
            Ok(())
        } else {
            Err(forbidden())
        }
    }

    /// Create a record from `name` and `specs` (which may carry `consumer`; `back-end` when
    /// absent, as in Cinder). 409 when the name is taken.
    pub async fn create_qos_specs(
        &self,
        caller: &Caller,
        name: &str,
        mut specs: BTreeMap<String, Option<String>>,
    ) -> Result<QosSpecs> {
        self.qos_admin(caller)?;
        let name = name.trim();
        if name.is_empty() {
            return Err(bad("Invalid input for field/attribute name. The 'name' can not be empty."));
        }
        if name.chars().count() > MAX_TEXT {
            return Err(bad(
                "Invalid input for field/attribute name. The 'name' can not be greater than 255 characters.",
            ));
        }
        let consumer = take_consumer(&mut specs)?.unwrap_or_else(|| DEFAULT_QOS_CONSUMER.to_string());
        check_specs(&specs, false)?;
        let q = QosSpecs {
            id: uuid::Uuid::new_v4().to_string(),
            name: name.to_string(),
            consumer,
            specs,
            created_at: now_timestamp(),
        };
        match self.db.create_qos_specs(&q).await? {
            QosWrite::Done => Ok(q),
            _ => Err(Error::conflict("EVS.5400", format!("QoS Specs {name} already exists."))),
        }
    }

    /// Every record, newest first.
    pub async fn list_qos_specs(&self, caller: &Caller) -> Result<Vec<QosSpecs>> {
        self.qos_admin(caller)?;
        self.db.list_qos_specs().await
    }

    /// One record (404 when unknown).
    pub async fn get_qos_specs(&self, caller: &Caller, id: &str) -> Result<QosSpecs> {
        self.qos_admin(caller)?;
        self.db.get_qos_specs(id).await?.ok_or_else(|| no_specs(id))
    }

    /// Set keys (and `consumer`, when among them) of a record.
    pub async fn set_qos_keys(
        &self,
        caller: &Caller,
        id: &str,
        mut specs: BTreeMap<String, Option<String>>,
    ) -> Result<()> {
        self.qos_admin(caller)?;
        let consumer = take_consumer(&mut specs)?;
        check_specs(&specs, true)?;
        match self.db.update_qos_specs(id, consumer.as_deref(), &specs, &now_timestamp()).await? {
            QosWrite::Done => {}
            _ => return Err(no_specs(id)),
        }
        self.reapply_qos().await;
        Ok(())
    }

    /// Delete keys of a record, all or none (404 naming the first key not set).
    pub async fn delete_qos_keys(&self, caller: &Caller, id: &str, keys: &[String]) -> Result<()> {
        self.qos_admin(caller)?;
        match self.db.delete_qos_keys(id, keys, &now_timestamp()).await? {
            QosWrite::Done => {}
            QosWrite::NoKey(k) => return Err(Error::not_found(format!("QoS spec {id} has no spec with key {k}."))),
            _ => return Err(no_specs(id)),
        }
        self.reapply_qos().await;
        Ok(())
    }

    /// Delete a record; a record still associated with a type is refused (400) unless `force`,
    /// which disassociates it first.
    pub async fn delete_qos_specs(&self, caller: &Caller, id: &str, force: bool) -> Result<()> {
        self.qos_admin(caller)?;
        match self.db.delete_qos_specs(id, force).await? {
            QosWrite::Done => {}
            QosWrite::InUse => return Err(bad("Qos specs still in use.")),
            _ => return Err(no_specs(id)),
        }
        self.catalog.reload(&self.db).await?;
        self.reapply_qos().await;
        Ok(())
    }

    /// The volume types associated with a record.
    pub async fn qos_associations(&self, caller: &Caller, id: &str) -> Result<Vec<QosAssociation>> {
        self.qos_admin(caller)?;
        if self.db.get_qos_specs(id).await?.is_none() {
            return Err(no_specs(id));
        }
        self.db.qos_associations(id).await
    }

    /// Associate a volume type (by id) with a record; 400 when the type has another one.
    pub async fn associate_qos_specs(&self, caller: &Caller, id: &str, type_id: &str) -> Result<()> {
        self.qos_admin(caller)?;
        match self.db.associate_qos_specs(id, type_id, &now_timestamp()).await? {
            QosWrite::Done => {}
            QosWrite::NoType => return Err(no_type(type_id)),
            QosWrite::TypeTaken(other) => {
                return Err(bad(format!(
                    "Invalid volume type: Type {type_id} is already associated with another qos specs: {other}"
                )))
            }
            _ => return Err(no_specs(id)),
        }
        self.catalog.reload(&self.db).await?;
        self.reapply_qos().await;
        Ok(())
    }

    /// Disassociate one volume type (`Some`) or all (`None`) from a record.
    pub async fn disassociate_qos_specs(&self, caller: &Caller, id: &str, type_id: Option<&str>) -> Result<()> {
        self.qos_admin(caller)?;
        match self.db.disassociate_qos_specs(id, type_id).await? {
            QosWrite::Done => {}
            QosWrite::NoType => return Err(no_type(type_id.unwrap_or_default())),
            _ => return Err(no_specs(id)),
        }
        self.catalog.reload(&self.db).await?;
        self.reapply_qos().await;
        Ok(())
    }

    /// qos: the back-end limits of a volume type: its associated specs when their consumer is
    /// `back-end` or `both`, else none.
    pub(super) async fn backend_qos_of_type(&self, type_id: &str) -> Result<QosLimits> {
        let Some(qid) = self.catalog.find_type(type_id).and_then(|t| t.qos_specs_id) else {
            return Ok(QosLimits::default());
        };
        let Some(q) = self.db.get_qos_specs(&qid).await? else { return Ok(QosLimits::default()) };
        if q.consumer == "front-end" {
            return Ok(QosLimits::default());
        }
        Ok(QosLimits::from_specs(q.specs.iter().filter_map(|(k, v)| v.as_deref().map(|v| (k.as_str(), v)))))
    }

    /// qos: the specs a consumer applies itself (`connection_info.data.qos_specs`, as Cinder
    /// hands them over): the type's specs when their consumer is `front-end` or `both`.
    pub(super) async fn frontend_qos_of_type(&self, type_id: &str) -> Result<Option<BTreeMap<String, String>>> {
        let Some(qid) = self.catalog.find_type(type_id).and_then(|t| t.qos_specs_id) else { return Ok(None) };
        let Some(q) = self.db.get_qos_specs(&qid).await? else { return Ok(None) };
        if q.consumer == "back-end" {
            return Ok(None);
        }
        Ok(Some(q.specs.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))).collect()))
    }

    /// qos: set the limits of attachment `a`'s NBD export (if it has one) from its volume's type
    /// and the volume's own EVS `iops`/`throughput` (the tighter of the two wins).
    pub(super) async fn apply_qos_to(&self, a: &crate::model::Attachment, v: &crate::model::Volume) -> Result<()> {
        let (Some(exports), Some(digest)) = (self.exports.as_deref(), super::ExportManager::nbd_digest(a)) else {
            return Ok(());
        };
        let limits = with_volume_limits(self.backend_qos_of_type(&v.volume_type_id).await?, &v.evs);
        exports.set_qos(&digest, limits);
        Ok(())
    }

    /// qos: re-apply every live NBD export's limits (after a restart and after any change to
    /// specs or associations). The change is committed already: a failure here is logged.
    pub async fn reapply_qos(&self) {
        let result = async {
            for a in self.db.exported_attachments().await? {
                if let Some(v) = self.db.get_volume(None, &a.volume_id).await? {
                    self.apply_qos_to(&a, &v).await?;
                }
            }
            Ok::<(), Error>(())
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e.message, "could not apply QoS limits to the live exports");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_limits_tighten_the_type_limits() {
        let evs = crate::model::VolumeEvs { qos_iops: Some(500), qos_throughput: Some(10), ..Default::default() };
        let none = with_volume_limits(QosLimits::default(), &evs);
        assert_eq!(none.total_iops, Some((500.0, 500.0)));
        assert_eq!(none.total_bytes, Some((10.0 * 1048576.0, 10.0 * 1048576.0)));
        let typed = QosLimits { total_iops: Some((100.0, 200.0)), ..Default::default() };
        assert_eq!(with_volume_limits(typed, &evs).total_iops, Some((100.0, 200.0)));
        assert!(with_volume_limits(QosLimits::default(), &Default::default()).is_unlimited());
    }
}
