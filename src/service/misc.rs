//! Misc admin APIs: volume type encryption records and per-project default volume types.
//! Records only: cinderblock stores what Cinder stores and shows it (volumes report
//! `encrypted` from their type); it encrypts nothing itself.

use super::{Caller, Services};
use crate::error::{Error, ErrorKind, Result};
use crate::model::{now_timestamp, DefaultType, TypeEncryption, VolumeType};
use crate::store::EncryptionWrite;

/// Longest provider or cipher string (Cinder's schema).
const MAX_TEXT: usize = 255;

/// The fields of an encryption create or update; `None` keeps (update) or is absent (create).
#[derive(Debug, Clone, Default)]
pub struct EncryptionSpec {
    /// `provider`
    pub provider: Option<String>,
    /// `cipher` (`Some(None)` = null)
    pub cipher: Option<Option<String>>,
    /// `key_size` (`Some(None)` = null)
    pub key_size: Option<Option<i64>>,
    /// `control_location`
    pub control_location: Option<String>,
}

fn forbidden() -> Error {
    Error::new(ErrorKind::Forbidden, "Policy doesn't allow this operation; it is admin-only.").with_code("EVS.5403")
}

fn check_spec(spec: &EncryptionSpec) -> Result<()> {
    let bad = |m: String| Error::invalid("EVS.5400", m);
    if let Some(p) = &spec.provider {
        if p.chars().count() > MAX_TEXT {
            return Err(bad(format!("Invalid input for field/attribute provider. Value: {p}. is too long")));
        }
    }
    if let Some(Some(c)) = &spec.cipher {
        if c.chars().count() > MAX_TEXT {
            return Err(bad(format!("Invalid input for field/attribute cipher. Value: {c}. is too long")));
        }
    }
    if let Some(l) = &spec.control_location {
        if l != "front-end" && l != "back-end" {
            return Err(bad(format!(
                "Invalid input for field/attribute control_location. Value: {l}. '{l}' is not one of ['front-end', 'back-end']"
            )));
        }
    }
    if let Some(Some(k)) = spec.key_size {
        if !(0..=0x7FFF_FFFF).contains(&k) {
            return Err(bad(format!("Invalid input for field/attribute key_size. Value: {k}.")));
        }
    }
    Ok(())
}

impl Services {
    /// An admin-visible type for the encryption routes (404 when unknown).
    fn encryption_type(&self, caller: &Caller, type_id: &str) -> Result<VolumeType> {
        if !caller.is_admin {
            return Err(forbidden());
        }
        self.get_volume_type(caller, type_id)
    }

    /// A type's encryption record (`None`: the type is not encrypted).
    pub async fn get_type_encryption(&self, caller: &Caller, type_id: &str) -> Result<Option<TypeEncryption>> {
        let t = self.encryption_type(caller, type_id)?;
        self.db.get_type_encryption(&t.id).await
    }

    /// Create a type's encryption record (`provider` and `control_location` required).
    pub async fn create_type_encryption(
        &self,
        caller: &Caller,
        type_id: &str,
        spec: EncryptionSpec,
    ) -> Result<TypeEncryption> {
        let t = self.encryption_type(caller, type_id)?;
        check_spec(&spec)?;
        let (Some(provider), Some(control_location)) = (spec.provider, spec.control_location) else {
            return Err(Error::invalid(
                "EVS.5400",
                "Invalid input for field/attribute encryption. 'provider' and 'control_location' are required properties",
            ));
        };
        let rec = TypeEncryption {
            volume_type_id: t.id.clone(),
            encryption_id: uuid::Uuid::new_v4().to_string(),
            provider,
            cipher: spec.cipher.flatten(),
            key_size: spec.key_size.flatten(),
            control_location,
            created_at: now_timestamp(),
            updated_at: None,
        };
        match self.db.write_type_encryption(&t.id, Some(&rec), true).await? {
            EncryptionWrite::Done => Ok(rec),
            EncryptionWrite::TypeInUse => {
                Err(Error::invalid("EVS.5400", "Cannot create encryption specs. Volume type in use."))
            }
            _ => Err(Error::conflict("EVS.5400", format!("Volume type encryption for type {} already exists.", t.id))),
        }
    }

    /// Change fields of a type's encryption record.
    pub async fn update_type_encryption(
        &self,
        caller: &Caller,
        type_id: &str,
        spec: EncryptionSpec,
    ) -> Result<TypeEncryption> {
        let t = self.encryption_type(caller, type_id)?;
        check_spec(&spec)?;
        let not_found = || Error::not_found(format!("Volume type encryption for type {} does not exist.", t.id));
        let mut rec = self.db.get_type_encryption(&t.id).await?.ok_or_else(not_found)?;
        if let Some(p) = spec.provider {
            rec.provider = p;
        }
        if let Some(c) = spec.cipher {
            rec.cipher = c;
        }
        if let Some(k) = spec.key_size {
            rec.key_size = k;
        }
        if let Some(l) = spec.control_location {
            rec.control_location = l;
        }
        rec.updated_at = Some(now_timestamp());
        match self.db.write_type_encryption(&t.id, Some(&rec), false).await? {
            EncryptionWrite::Done => Ok(rec),
            EncryptionWrite::TypeInUse => {
                Err(Error::invalid("EVS.5400", "Cannot update encryption specs. Volume type in use."))
            }
            _ => Err(not_found()),
        }
    }

    /// Delete a type's encryption record.
    pub async fn delete_type_encryption(&self, caller: &Caller, type_id: &str) -> Result<()> {
        let t = self.encryption_type(caller, type_id)?;
        match self.db.write_type_encryption(&t.id, None, false).await? {
            EncryptionWrite::Done => Ok(()),
            EncryptionWrite::TypeInUse => {
                Err(Error::invalid("EVS.5400", "Cannot delete encryption specs. Volume type in use."))
            }
            _ => Err(Error::not_found(format!("Volume type encryption for type {} does not exist.", t.id))),
        }
    }

    /// The type a volume created in `project` without a type gets: the project's default type
    /// when one is set (and still exists), else the configured default.
    pub async fn project_default_type(&self, project: &str) -> Result<String> {
        if let Some(d) = self.db.get_default_type(project).await? {
            if self.catalog.find_type(&d.volume_type_id).is_some() {
                return Ok(d.volume_type_id);
            }
        }
        Ok(self.config.default_volume_type.clone())
    }

    /// Set `project`'s default type (admin).
    pub async fn set_default_type(&self, caller: &Caller, project: &str, type_ref: &str) -> Result<DefaultType> {
        if !caller.is_admin {
            return Err(forbidden());
        }
        // Cinder answers an unknown type here with 400, not 404.
        let t = self.get_volume_type(caller, type_ref).map_err(|e| Error::invalid("EVS.5400", e.message))?;
        if !self.db.set_default_type(project, &t.id, &now_timestamp()).await? {
            return Err(Error::not_found(format!("Volume type {type_ref} could not be found.")));
        }
        Ok(DefaultType { project_id: project.to_string(), volume_type_id: t.id })
    }

    /// `project`'s default type (admin); 404 when none is set.
    pub async fn get_default_type(&self, caller: &Caller, project: &str) -> Result<DefaultType> {
        if !caller.is_admin {
            return Err(forbidden());
        }
        self.db
            .get_default_type(project)
            .await?
            .ok_or_else(|| Error::not_found(format!("Default type for project {project} could not be found.")))
    }

    /// Every project's default type (admin).
    pub async fn list_default_types(&self, caller: &Caller) -> Result<Vec<DefaultType>> {
        if !caller.is_admin {
            return Err(forbidden());
        }
        self.db.list_default_types().await
    }

    /// Unset `project`'s default type (admin); unsetting an unset one is fine, as in Cinder.
    pub async fn delete_default_type(&self, caller: &Caller, project: &str) -> Result<()> {
        if !caller.is_admin {
            return Err(forbidden());
        }
        self.db.delete_default_type(project).await?;
        Ok(())
    }
}
