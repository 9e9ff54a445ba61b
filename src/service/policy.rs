//! Policy: the one table mapping actions (the names of the EVS reference's section 9, plus a
//! few for Cinder routes the reference does not list) to the lowest role allowed to run them.
//!
//! Roles are ordered (`reader` < `member` < `admin`): a reader runs read actions, a member reads
//! and writes in its project, an admin does everything, in every project. An action missing
//! from the table is admin-only, so a route that forgets to name its action fails closed.
//! Whether the caller may act in the URL's project at all (its own, or any for admins) is
//! checked before the policy.

use crate::error::{Error, ErrorKind, Result};
use crate::model::Role;

use Role::{Admin, Member, Reader};

/// Action → lowest role allowed.
pub const POLICY: &[(&str, Role)] = &[
    // Disks (9.3, 9.4).
    ("evs:volumes:list", Reader),
    ("evs:volumes:get", Reader),
    ("evs:volumes:create", Member),
    ("evs:volumes:update", Member),
    ("evs:volumes:delete", Member),
    ("evs:volumes:extend", Member),
    ("evs:volumes:attach", Member),
    ("evs:volumes:detach", Member),
    ("evs:volumes:retype", Member),
    ("evs:volumes:uploadImage", Member),
    ("evs:volumes:resetStatus", Admin),
    ("evs:volumes:forceDelete", Admin),
    ("evs:volumes:forceDetach", Admin),
    ("evs:volumes:migrate", Admin),
    ("evs:volumes:manage", Admin),
    // Attachments (Cinder v3 attachments API).
    ("evs:attachments:list", Reader),
    ("evs:attachments:get", Reader),
    ("evs:attachments:create", Member),
    ("evs:attachments:update", Member),
    ("evs:attachments:complete", Member),
    ("evs:attachments:delete", Member),
    // Snapshots (9.5).
    ("evs:snapshots:list", Reader),
    ("evs:snapshots:get", Reader),
    ("evs:snapshots:create", Member),
    ("evs:snapshots:update", Member),
    ("evs:snapshots:delete", Member),
    ("evs:snapshots:rollback", Member),
    ("evs:snapshots:resetStatus", Admin),
    ("evs:snapshots:forceDelete", Admin),
    // Snapshot groups (EVS v5; one crash-consistent set of member snapshots).
    ("evs:snapshotGroups:list", Reader),
    ("evs:snapshotGroups:get", Reader),
    ("evs:snapshotGroups:create", Member),
    ("evs:snapshotGroups:update", Member),
    ("evs:snapshotGroups:delete", Member),
    ("evs:snapshotGroups:rollback", Member),
    // Auto-snapshot policies (EVS v5; the daemon's scheduler takes and trims the snapshots).
    ("evs:snapshotPolicies:list", Reader),
    ("evs:snapshotPolicies:get", Reader),
    ("evs:snapshotPolicies:create", Member),
    ("evs:snapshotPolicies:update", Member),
    ("evs:snapshotPolicies:delete", Member),
    // actions: a snapshot's creator reports its status (Cinder's update_snapshot_status: member).
    ("evs:snapshots:updateStatus", Member),
    // actions: user messages (Cinder: project readers list and show, members delete).
    ("evs:messages:list", Reader),
    ("evs:messages:get", Reader),
    ("evs:messages:delete", Member),
    // Tags (9.6).
    ("evs:volumeTags:list", Reader),
    ("evs:volumeTags:get", Reader),
    ("evs:volumeTags:getById", Reader),
    ("evs:volumeTags:create", Member),
    ("evs:volumeTags:update", Member),
    ("evs:volumeTags:delete", Member),
    ("evs:snapshotTags:list", Reader),
    ("evs:snapshotTags:get", Reader),
    ("evs:snapshotTags:getById", Reader),
    ("evs:snapshotTags:create", Member),
    ("evs:snapshotTags:update", Member),
    ("evs:snapshotTags:delete", Member),
    ("evs:backupTags:list", Reader),
    ("evs:backupTags:get", Reader),
    ("evs:backupTags:getById", Reader),
    ("evs:backupTags:create", Member),
    ("evs:backupTags:update", Member),
    ("evs:backupTags:delete", Member),
    // Transfers (9.7).
    ("evs:transfers:list", Reader),
    ("evs:transfers:get", Reader),
    ("evs:transfers:create", Member),
    ("evs:transfers:accept", Member),
    ("evs:transfers:delete", Member),
    // Jobs (EVS), types, zones, quotas, limits.
    ("evs:jobs:get", Reader),
    ("evs:types:get", Reader),
    ("evs:types:manage", Admin),
    ("evs:types:access", Admin),
    ("evs:quotas:get", Reader),
    ("evs:quotas:update", Admin),
    ("evs:quotas:delete", Admin),
    ("evs:quotaClasses:get", Admin),
    ("evs:quotaClasses:update", Admin),
    ("evs:limits:get", Reader),
    ("evs:availabilityZones:list", Reader),
    ("evs:extensions:list", Reader),
    // Backups (reserved for the backup routes).
    ("evs:backups:list", Reader),
    ("evs:backups:get", Reader),
    ("evs:backups:create", Member),
    ("evs:backups:update", Member),
    ("evs:backups:delete", Member),
    ("evs:backups:restore", Member),
    // misc: encryption types, default types (admin, as in Cinder).
    ("evs:types:encryption", Admin),
    ("evs:defaultTypes:manage", Admin),
    // qos: QoS specs (Cinder's qos_specs_manage policies, admin-only).
    ("evs:qosSpecs:list", Admin),
    ("evs:qosSpecs:get", Admin),
    ("evs:qosSpecs:create", Admin),
    ("evs:qosSpecs:update", Admin),
    ("evs:qosSpecs:delete", Admin),
    // groups: generic volume groups (Cinder's group policies: types admin, groups member).
    ("evs:groupTypes:get", Reader),
    ("evs:groupTypes:manage", Admin),
    ("evs:groupTypes:specs", Admin),
    ("evs:groups:list", Reader),
    ("evs:groups:get", Reader),
    ("evs:groups:create", Member),
    ("evs:groups:update", Member),
    ("evs:groups:delete", Member),
    ("evs:groups:resetStatus", Admin),
    ("evs:groupSnapshots:list", Reader),
    ("evs:groupSnapshots:get", Reader),
    ("evs:groupSnapshots:create", Member),
    ("evs:groupSnapshots:delete", Member),
    ("evs:groupSnapshots:resetStatus", Admin),
    // services: Cinder's operator APIs (admin-only) and the extension list (any reader).
    ("evs:services:list", Admin),
    ("evs:services:update", Admin),
    ("evs:hosts:manage", Admin),
    ("evs:schedulerStats:getPools", Admin),
    ("evs:capabilities:show", Admin),
    // Operations: Prometheus metrics span every project.
    ("cinderblock:metrics:get", Admin),
    // images: the built-in image service (Glance v2 routes under /image). Making an image
    // public needs an admin (Glance's publicize_image), checked by the service.
    ("image:images:list", Reader),
    ("image:images:get", Reader),
    ("image:images:create", Member),
    ("image:images:update", Member),
    ("image:images:delete", Member),
    ("image:images:upload", Member),
    ("image:images:download", Reader),
    // Glance's defaults: the owner project's members (and admins) may withdraw an image.
    ("image:images:deactivate", Member),
    ("image:images:reactivate", Member),
    ("image:images:imageMetadata", Member),
    // Operator-only views (services, pools, hosts, messages of all projects…).
    ("evs:admin", Admin),
];

/// The lowest role allowed to run `action` (admin when the table does not name it).
pub fn required_role(action: &str) -> Role {
    POLICY.iter().find(|(a, _)| *a == action).map(|(_, r)| *r).unwrap_or(Admin)
}

/// True when `action` is in [`POLICY`] (routes may name only these).
pub fn is_known(action: &str) -> bool {
    POLICY.iter().any(|(a, _)| *a == action)
}

/// The highest of `roles` (`None` when empty).
pub fn effective_role(roles: &[Role]) -> Option<Role> {
    roles.iter().copied().max()
}

/// Allow `action` for a caller holding `roles`, or the 403 `EVS.5403` "Policy check failed."
pub fn authorize(roles: &[Role], action: &str) -> Result<()> {
    let need = required_role(action);
    match effective_role(roles) {
        Some(have) if have >= need => Ok(()),
        _ => Err(Error::new(ErrorKind::Forbidden, format!("Policy check failed: {action} requires the {need} role."))
            .with_code("EVS.5403")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_no_duplicates() {
        let mut names: Vec<&str> = POLICY.iter().map(|(a, _)| *a).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len());
    }

    // misc: encryption records and default types are admin-only, as in Cinder.
    #[test]
    fn misc_actions_are_admin_only() {
        for a in ["evs:types:encryption", "evs:defaultTypes:manage"] {
            assert!(authorize(&[Member], a).is_err(), "{a}");
            assert!(authorize(&[Reader], a).is_err(), "{a}");
            assert!(authorize(&[Admin], a).is_ok(), "{a}");
        }
    }

    // qos: QoS specs are admin-only, as in Cinder.
    #[test]
    fn qos_actions_are_admin_only() {
        for a in POLICY.iter().map(|(a, _)| *a).filter(|a| a.starts_with("evs:qosSpecs:")) {
            assert!(authorize(&[Member], a).is_err(), "{a}");
            assert!(authorize(&[Reader], a).is_err(), "{a}");
            assert!(authorize(&[Admin], a).is_ok(), "{a}");
        }
    }

    // groups: group types are admin writes, groups member writes, reset_status admin.
    #[test]
    fn group_actions_follow_cinder() {
        for a in [
            "evs:groupTypes:manage",
            "evs:groupTypes:specs",
            "evs:groups:resetStatus",
            "evs:groupSnapshots:resetStatus",
        ] {
            assert!(authorize(&[Member], a).is_err(), "{a}");
            assert!(authorize(&[Admin], a).is_ok(), "{a}");
        }
        for a in ["evs:groups:create", "evs:groups:update", "evs:groups:delete", "evs:groupSnapshots:create"] {
            assert!(authorize(&[Reader], a).is_err(), "{a}");
            assert!(authorize(&[Member], a).is_ok(), "{a}");
        }
        for a in ["evs:groupTypes:get", "evs:groups:list", "evs:groups:get", "evs:groupSnapshots:list"] {
            assert!(authorize(&[Reader], a).is_ok(), "{a}");
        }
    }

    #[test]
    fn roles_nest() {
        assert!(authorize(&[Reader], "evs:volumes:list").is_ok());
        assert!(authorize(&[Reader], "evs:volumes:create").is_err());
        assert!(authorize(&[Member], "evs:volumes:create").is_ok());
        assert!(authorize(&[Member], "evs:volumes:resetStatus").is_err());
        assert!(authorize(&[Reader, Admin], "evs:volumes:resetStatus").is_ok());
        assert!(authorize(&[], "evs:volumes:list").is_err());
        assert!(authorize(&[Member], "evs:no-such-action").is_err(), "unknown actions are admin-only");
        let e = authorize(&[Reader], "evs:volumes:delete").expect_err("denied");
        assert_eq!((e.kind, e.code), (ErrorKind::Forbidden, Some("EVS.5403")));
    }
}
