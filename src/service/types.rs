//! Volume type management (admin): create, update, delete, extra specs, and access of private
//! types. `volume_backend_name` maps a type to the pools it is placed on.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::{Caller, Services};
use crate::error::{Error, ErrorKind, Result};
use crate::model::{now_timestamp, VolumeType};

/// Changes to a type; `None` keeps.
#[derive(Debug, Clone, Default)]
pub struct TypeChange {
    /// New name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<Option<String>>,
    /// New visibility.
    pub is_public: Option<bool>,
}

fn forbidden() -> Error {
    Error::new(ErrorKind::Forbidden, "Policy doesn't allow managing volume types.").with_code("EVS.5403")
}

fn check_name(name: &str) -> Result<()> {
    if name.trim().is_empty() || name.chars().count() > 255 {
        return Err(Error::invalid("EVS.5400", "Volume type name must be 1 to 255 characters."));
    }
    Ok(())
}

fn check_specs(specs: &BTreeMap<String, String>) -> Result<()> {
    for (k, v) in specs {
        if k.is_empty() || k.len() > 255 || v.len() > 255 {
            return Err(Error::invalid("EVS.5400", format!("extra spec {k:?} and its value must be 1 to 255 bytes")));
        }
    }
    Ok(())
}

impl Services {
    /// Types the caller may see (private ones only with access, or as admin).
    pub fn visible_types(&self, caller: &Caller) -> Vec<VolumeType> {
        self.catalog.types().into_iter().filter(|t| t.visible_to(&caller.project_id, caller.is_admin)).collect()
    }

    /// One type the caller may see, by id or name (`default` = the default type).
    pub fn get_volume_type(&self, caller: &Caller, id: &str) -> Result<VolumeType> {
        let key = if id == "default" { self.config.default_volume_type.as_str() } else { id };
        self.catalog
            .find_type(key)
            .filter(|t| t.visible_to(&caller.project_id, caller.is_admin))
            .ok_or_else(|| Error::not_found(format!("Volume type {id} could not be found.")))
    }

    /// Create a type.
    pub async fn create_volume_type(
        &self,
        caller: &Caller,
        name: String,
        description: Option<String>,
        is_public: bool,
        extra_specs: BTreeMap<String, String>,
    ) -> Result<VolumeType> {
        if !caller.is_admin {
            return Err(forbidden());
        }
        check_name(&name)?;
        check_specs(&extra_specs)?;
        let t = VolumeType {
            id: Uuid::new_v4().to_string(),
            name,
            description,
            is_public,
            extra_specs,
            projects: Vec::new(),
            qos_specs_id: None,
        };
        if !self.db.create_volume_type(&t, &now_timestamp()).await? {
            return Err(Error::conflict("EVS.5400", format!("Volume Type {} already exists.", t.name)));
        }
        self.catalog.reload(&self.db).await?;
        Ok(t)
    }

    async fn save_type(&self, t: &VolumeType) -> Result<VolumeType> {
        if !self.db.update_volume_type(t).await? {
            return Err(Error::conflict("EVS.5400", format!("Volume Type {} already exists.", t.name)));
        }
        self.catalog.reload(&self.db).await?;
        self.catalog.require_type(&t.id)
    }

    /// Change name, description or visibility.
    pub async fn update_volume_type(&self, caller: &Caller, id: &str, change: TypeChange) -> Result<VolumeType> {
        if !caller.is_admin {
            return Err(forbidden());
        }
        let mut t = self.get_volume_type(caller, id)?;
        if let Some(n) = change.name {
            check_name(&n)?;
            if t.name == self.config.default_volume_type && n != t.name {
                return Err(Error::invalid("EVS.5400", "The default volume type cannot be renamed."));
            }
            t.name = n;
        }
        if let Some(d) = change.description {
            t.description = d;
        }
        if let Some(p) = change.is_public {
            t.is_public = p;
        }
        self.save_type(&t).await
    }

    /// Delete a type no volume uses.
    pub async fn delete_volume_type(&self, caller: &Caller, id: &str) -> Result<()> {
        if !caller.is_admin {
            return Err(forbidden());
        }
        let t = self.get_volume_type(caller, id)?;
        if t.name == self.config.default_volume_type {
            return Err(Error::invalid("EVS.5400", "The default volume type cannot be deleted."));
        }
        if !self.db.delete_volume_type(&t.id).await? {
            return Err(Error::invalid("EVS.5400", format!("Target volume type {} is still in use.", t.id)));
        }
        self.catalog.reload(&self.db).await
    }

    /// Add extra specs (or, with `replace_key`, set exactly one).
    pub async fn set_extra_specs(
        &self,
        caller: &Caller,
        id: &str,
        specs: BTreeMap<String, String>,
    ) -> Result<VolumeType> {
        if !caller.is_admin {
            return Err(forbidden());
        }
        check_specs(&specs)?;
        if let Some(b) = specs.get("volume_backend_name") {
            for pool in b.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                if !self.pools.contains_key(pool) {
                    return Err(Error::invalid(
                        "EVS.5400",
                        format!("volume_backend_name names an unknown pool {pool:?}"),
                    ));
                }
            }
        }
        let mut t = self.get_volume_type(caller, id)?;
        t.extra_specs.extend(specs);
        self.save_type(&t).await
    }

    /// Remove one extra spec (404 when absent).
    pub async fn delete_extra_spec(&self, caller: &Caller, id: &str, key: &str) -> Result<()> {
        if !caller.is_admin {
            return Err(forbidden());
        }
        let mut t = self.get_volume_type(caller, id)?;
        if t.extra_specs.remove(key).is_none() {
            return Err(Error::not_found(format!("Volume Type {id} has no extra specs with key {key}.")));
        }
        self.save_type(&t).await.map(|_| ())
    }

    /// Grant (`add`) or revoke a project's access to a private type.
    pub async fn set_type_access(&self, caller: &Caller, id: &str, project: &str, add: bool) -> Result<()> {
        if !caller.is_admin {
            return Err(forbidden());
        }
        if project.is_empty()
            || project.len() > 64
            || !project.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(Error::invalid(
                "EVS.0001",
                format!("Invalid input for field/attribute project. Value: {project:?} is not a valid project id."),
            ));
        }
        let mut t = self.get_volume_type(caller, id)?;
        if t.is_public {
            return Err(Error::invalid("EVS.5400", "Access can only be managed on a private volume type."));
        }
        let has = t.projects.iter().any(|p| p == project);
        match (add, has) {
            (true, true) => return Err(Error::conflict("EVS.5400", format!("Project {project} already has access."))),
            (false, false) => return Err(Error::not_found(format!("Project {project} has no access to type {id}."))),
            (true, false) => t.projects.push(project.to_string()),
            (false, true) => t.projects.retain(|p| p != project),
        }
        self.save_type(&t).await.map(|_| ())
    }
}
