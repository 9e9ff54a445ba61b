//! The scheduler: which pool a new (or migrating) volume goes to, as Cinder's filter scheduler
//! decides it, in one place.
//!
//! A pool is a candidate when it serves the volume's availability zone, is named by the type's
//! `volume_backend_name` (any pool when the type names none; see
//! [`VolumeType::backends`](crate::model::VolumeType::backends)) and takes new volumes (its
//! service is neither disabled nor frozen: `services::accepts_new_volumes`). Among candidates, the
//! first in configuration order whose capabilities ([`pool_capabilities`], the map `get_pools`
//! shows) satisfy every capability extra spec of the type wins, with the operators of Cinder's
//! `extra_specs_ops` ([`spec_matches`]). When candidates exist but none has the capabilities, the
//! volume is still accepted on the first one and its job fails it (`error` plus a user message),
//! as Cinder's scheduler fails a volume it cannot place; an availability zone or pool name that
//! cannot work at all is refused at once (400, nothing written).

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::{PoolRuntime, PoolStats, Services};
use crate::error::{Error, Result};
use crate::model::VolumeType;

/// The vendor every pool reports to Cinder's capabilities filter.
pub const VENDOR_NAME: &str = "cinderblock";
/// The storage protocol every pool reports (volumes are exported over NBD).
pub const STORAGE_PROTOCOL: &str = "nbd";
/// The driver version every pool reports.
pub const DRIVER_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Where a volume goes.
pub(super) struct Placement<'a> {
    /// The pool.
    pub pool: &'a PoolRuntime,
    /// The pool has every capability the type asks for. False: the volume is accepted and its
    /// job fails it with "No valid backend was found".
    pub fits: bool,
}

/// A pool's capabilities, as a Cinder driver's `get_volume_stats` reports them: what
/// `get_pools?detail=true` shows and what the type's extra specs are matched against.
pub fn pool_capabilities(s: &PoolStats) -> Map<String, Value> {
    let v = json!({
        "pool_name": s.pool,
        "volume_backend_name": s.pool,
        "vendor_name": VENDOR_NAME,
        "driver_version": DRIVER_VERSION,
        "storage_protocol": STORAGE_PROTOCOL,
        "total_capacity_gb": s.total_capacity_gb,
        "free_capacity_gb": s.free_capacity_gb,
        "allocated_capacity_gb": s.allocated_capacity_gb,
        "provisioned_capacity_gb": s.allocated_capacity_gb,
        "max_over_subscription_ratio": s.max_over_subscription_ratio,
        "reserved_percentage": 0,
        "thin_provisioning_support": true,
        "thick_provisioning_support": false,
        "multiattach": true,
        "QoS_support": false,
        "online_extend_support": true,
        "sparse_copy_volume": true,
        "reflink": s.reflink,
        "availability_zone": s.availability_zone,
        "backend_state": "up",
    });
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// Cinder's `CapabilitiesFilter`: every extra spec that is unscoped or `capabilities:`-scoped
/// must match the capability of that name (a missing capability fails); specs in other scopes
/// (`qos:`, `hw:`, vendor keys) are not the scheduler's. A list capability matches when any
/// element does. `volume_backend_name` is left to [`VolumeType::backends`] (which also takes a
/// comma-separated list of pools).
pub fn satisfies_extra_specs(caps: &Map<String, Value>, specs: &BTreeMap<String, String>) -> bool {
    specs.iter().all(|(key, req)| {
        let mut scope: Vec<&str> = key.split(':').collect();
        if scope.len() > 1 && scope[0] != "capabilities" {
            return true;
        }
        if scope[0] == "capabilities" {
            scope.remove(0);
        }
        if scope == ["volume_backend_name"] {
            return true;
        }
        let mut cap = match scope.first().and_then(|k| caps.get(*k)) {
            Some(c) => c.clone(),
            None => return false,
        };
        for k in scope.iter().skip(1) {
            cap = match cap.get(*k) {
                Some(c) => c.clone(),
                None => return false,
            };
        }
        // Cinder drivers report each protocol's spellings (`['iSCSI', 'iscsi']`); ours is
        // matched in either case the same way.
        if scope == ["storage_protocol"] {
            cap = json!([STORAGE_PROTOCOL, STORAGE_PROTOCOL.to_ascii_uppercase()]);
        }
        match &cap {
            Value::Array(values) => values.iter().any(|v| spec_matches(v, req)),
            v => spec_matches(v, req),
        }
    })
}

/// `bool_from_string` of oslo: `true`, `1`, `yes`, `y`, `on`, `t` (any case) are true.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() == Some(1.0),
        Value::String(s) => ["true", "1", "yes", "y", "on", "t"].contains(&s.trim().to_ascii_lowercase().as_str()),
        _ => false,
    }
}

/// Python's `float(x)` of a capability or a spec word; `None` where Python raises.
fn as_float(v: &Value) -> Option<f64> {
    match v {
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// One spec against one capability value, as Cinder's `extra_specs_ops.match`: the first word
/// may be an operator (`=` numeric at least, `==`, `!=`, `>=`, `<=`, `s==`, `s!=`, `s<`,
/// `s<=`, `s>`, `s>=`, `<in>` substring, `<is>` boolean, `<or>` alternatives); without one the
/// spec must equal the capability (a string; Python's `True == "True"` is false, so a boolean
/// capability needs `<is> True`).
pub fn spec_matches(value: &Value, req: &str) -> bool {
    let mut words = req.split_whitespace();
    let op = words.next().unwrap_or("");
    let arg = words.next();
    let string = value.as_str();
    let num = |f: fn(f64, f64) -> bool| match (as_float(value), arg.map(|a| as_float(&Value::String(a.into())))) {
        (Some(x), Some(Some(y))) => f(x, y),
        _ => false,
    };
    let text = |f: fn(&str, &str) -> bool| matches!((string, arg), (Some(x), Some(y)) if f(x, y));
    match op {
        "=" => num(|x, y| x >= y),
        "==" => num(|x, y| x == y),
        "!=" => num(|x, y| x != y),
        ">=" => num(|x, y| x >= y),
        "<=" => num(|x, y| x <= y),
        "s==" => text(|x, y| x == y),
        "s!=" => text(|x, y| x != y),
        "s<" => text(|x, y| x < y),
        "s<=" => text(|x, y| x <= y),
        "s>" => text(|x, y| x > y),
        "s>=" => text(|x, y| x >= y),
        "<in>" => text(|x, y| x.contains(y)),
        "<is>" => arg.is_some_and(|a| truthy(value) == truthy(&Value::String(a.into()))),
        "<or>" => {
            // `<or> v1 <or> v2 …`: the words between the keywords.
            let Some(s) = string else { return false };
            req.split_whitespace().filter(|w| *w != "<or>").any(|w| w == s)
        }
        _ => string == Some(req),
    }
}

impl Services {
    /// Whether the configured pool `pool` has every capability `vtype` asks for.
    pub(super) async fn pool_fits(&self, pool: &str, vtype: &VolumeType) -> Result<bool> {
        Ok(satisfies_extra_specs(&pool_capabilities(&self.pool_stats_of(pool).await?), &vtype.extra_specs))
    }

    /// Choose the pool of a new volume of type `vtype` in `az` (see the module docs).
    pub(super) async fn place(&self, az: &str, vtype: &VolumeType) -> Result<Placement<'_>> {
        let type_name = &vtype.name;
        let backends = vtype.backends();
        let candidates: Vec<&PoolRuntime> = self
            .config
            .pools
            .iter()
            .filter(|p| p.availability_zone == az && backends.as_ref().is_none_or(|b| b.contains(&p.name.as_str())))
            .filter_map(|p| self.pools.get(&p.name))
            .collect();
        if candidates.is_empty() {
            return Err(Error::invalid(
                "EVS.2071",
                format!("Invalid input received: Availability zone [{az}] do not have volume type [{type_name}]"),
            ));
        }
        let skip = self.unschedulable_pools().await?;
        let open: Vec<&PoolRuntime> = candidates.into_iter().filter(|p| !skip.contains(&p.config.name)).collect();
        let Some(first) = open.first().copied() else {
            return Err(Error::invalid(
                "EVS.2071",
                format!(
                    "No valid backend was found. Every pool serving volume type [{type_name}] in availability \
                     zone [{az}] is disabled or frozen."
                ),
            ));
        };
        for pool in open {
            if self.pool_fits(&pool.config.name, vtype).await? {
                return Ok(Placement { pool, fits: true });
            }
        }
        Ok(Placement { pool: first, fits: false })
    }

    /// evs: place on the pool an `OS-SCH-HNT:scheduler_hints.dedicated_storage_id` names. The
    /// pool must exist, be in `az`, be one the type may use and accept new volumes; otherwise
    /// the create is refused (never placed elsewhere).
    pub(super) async fn place_on(&self, az: &str, vtype: &VolumeType, name: &str) -> Result<Placement<'_>> {
        let Some(pool) = self.pools.get(name) else {
            return Err(Error::invalid(
                "EVS.5400",
                format!("Invalid dedicated_storage_id: no storage pool {name:?} exists."),
            ));
        };
        if pool.config.availability_zone != az {
            return Err(Error::invalid(
                "EVS.2053",
                format!(
                    "The az information from request is invalid: pool {name} is in availability zone {}, not {az}.",
                    pool.config.availability_zone
                ),
            ));
        }
        if vtype.backends().is_some_and(|b| !b.contains(&name)) {
            return Err(Error::invalid(
                "EVS.2071",
                format!("Invalid input received: pool {name} does not serve volume type [{}]", vtype.name),
            ));
        }
        if self.unschedulable_pools().await?.contains(name) {
            return Err(Error::invalid("EVS.2071", format!("Pool {name} is disabled or frozen.")));
        }
        let fits = self.pool_fits(name, vtype).await?;
        Ok(Placement { pool, fits })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn caps() -> Map<String, Value> {
        pool_capabilities(&PoolStats {
            pool: "fast".into(),
            host: "node@fast".into(),
            total_capacity_gb: 100.0,
            free_capacity_gb: 40.5,
            allocated_capacity_gb: 7,
            max_over_subscription_ratio: 20.0,
            reflink: true,
            availability_zone: "nova".into(),
        })
    }

    #[test]
    fn operators_as_cinder() {
        let s = |v: &str| Value::String(v.into());
        assert!(spec_matches(&s("nbd"), "nbd"));
        assert!(!spec_matches(&s("nbd"), "iSCSI"));
        assert!(!spec_matches(&json!(true), "True"), "Python: True == 'True' is false");
        assert!(spec_matches(&json!(true), "<is> True"));
        assert!(spec_matches(&json!(false), "<is> False"));
        assert!(!spec_matches(&json!(true), "<is> False"));
        assert!(spec_matches(&json!(40.5), "= 40"));
        assert!(!spec_matches(&json!(40.5), "= 41"));
        assert!(spec_matches(&json!(40.5), ">= 40.5"));
        assert!(spec_matches(&json!(40.5), "<= 41"));
        assert!(spec_matches(&json!(7), "== 7"));
        assert!(spec_matches(&json!(7), "!= 8"));
        assert!(!spec_matches(&s("abc"), "== 7"), "float('abc') fails: no match");
        assert!(spec_matches(&s("cinderblock"), "<in> block"));
        assert!(!spec_matches(&s("cinderblock"), "<in> ceph"));
        assert!(spec_matches(&s("b"), "<or> a <or> b <or> c"));
        assert!(!spec_matches(&s("d"), "<or> a <or> b"));
        assert!(spec_matches(&s("abc"), "s== abc"));
        assert!(spec_matches(&s("abc"), "s!= abd"));
        assert!(spec_matches(&s("abc"), "s< abd"));
        assert!(spec_matches(&s("abd"), "s>= abc"));
        assert!(!spec_matches(&json!(1), "s== 1"), "string operators need strings");
        assert!(!spec_matches(&s("x"), "="), "an operator without an argument matches nothing");
    }

    #[test]
    fn capabilities_filter_as_cinder() {
        let c = caps();
        assert!(satisfies_extra_specs(&c, &specs(&[])));
        assert!(satisfies_extra_specs(&c, &specs(&[("storage_protocol", "nbd"), ("vendor_name", "cinderblock")])));
        assert!(satisfies_extra_specs(&c, &specs(&[("storage_protocol", "NBD")])), "protocol spellings");
        assert!(!satisfies_extra_specs(&c, &specs(&[("storage_protocol", "iSCSI")])));
        assert!(satisfies_extra_specs(&c, &specs(&[("capabilities:thin_provisioning_support", "<is> True")])));
        assert!(!satisfies_extra_specs(&c, &specs(&[("thick_provisioning_support", "<is> True")])));
        assert!(satisfies_extra_specs(&c, &specs(&[("free_capacity_gb", ">= 10")])));
        assert!(!satisfies_extra_specs(&c, &specs(&[("free_capacity_gb", ">= 100")])));
        assert!(!satisfies_extra_specs(&c, &specs(&[("replication_enabled", "<is> True")])), "missing capability");
        // Other scopes are not the scheduler's; the backend name is matched elsewhere.
        assert!(satisfies_extra_specs(&c, &specs(&[("qos:total_iops_sec", "1000"), ("hw:passthrough", "true")])));
        assert!(satisfies_extra_specs(&c, &specs(&[("volume_backend_name", "fast,slow")])));
    }
}
