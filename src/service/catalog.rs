//! Volume types and availability zones.
//!
//! Types are rows (ids stay stable across restarts): the configured ones are created at first
//! start with `volume_backend_name` naming the pools that serve them; admins create, change and
//! delete more through the API. Reads go to an in-memory copy that every change reloads, so the
//! create path never queries the type tables.

use std::collections::BTreeMap;
use std::sync::RwLock;

use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};
use crate::model::{now_timestamp, VolumeType};
use crate::store::Db;

/// Types and zones this node serves.
#[derive(Debug)]
pub struct Catalog {
    types: RwLock<Vec<VolumeType>>,
    /// Availability zones (from the pools).
    pub zones: Vec<String>,
}

impl Catalog {
    /// Make sure every configured type exists as a row and every pool is registered, then load.
    pub async fn load(db: &Db, config: &Config) -> Result<Catalog> {
        let now = now_timestamp();
        for p in &config.pools {
            db.ensure_pool(&p.name).await?;
        }
        // services: this node's scheduler and one volume service per pool (os-services).
        super::services::register(db, config, &now).await?;
        for name in config.volume_type_names() {
            let backends: Vec<&str> =
                config.pools.iter().filter(|p| p.volume_types.contains(&name)).map(|p| p.name.as_str()).collect();
            let mut specs = BTreeMap::new();
            specs.insert("volume_backend_name".to_string(), backends.join(","));
            let desc = (name == "__DEFAULT__").then_some("Default Volume Type");
            db.ensure_volume_type(&name, desc, &specs, &now).await?;
        }
        let types = db.list_volume_types().await?;
        Ok(Catalog { types: RwLock::new(types), zones: config.availability_zones() })
    }

    /// Re-read the types after a change.
    pub async fn reload(&self, db: &Db) -> Result<()> {
        let types = db.list_volume_types().await?;
        *self.types.write().unwrap_or_else(|e| e.into_inner()) = types;
        Ok(())
    }

    /// Every type, ordered by name.
    pub fn types(&self) -> Vec<VolumeType> {
        self.types.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A type by id or by name.
    pub fn find_type(&self, id_or_name: &str) -> Option<VolumeType> {
        let types = self.types.read().unwrap_or_else(|e| e.into_inner());
        types.iter().find(|t| t.id == id_or_name).or_else(|| types.iter().find(|t| t.name == id_or_name)).cloned()
    }

    /// A type by id or name, or the reference's "invalid volume type" error.
    pub fn require_type(&self, id_or_name: &str) -> Result<VolumeType> {
        self.find_type(id_or_name).ok_or_else(|| {
            Error::new(ErrorKind::NotFound, format!("Volume type {id_or_name} could not be found."))
                .with_code("EVS.1020")
        })
    }
}
