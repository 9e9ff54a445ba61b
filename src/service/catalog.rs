//! Volume types and availability zones, loaded once at start from the config (types are also
//! rows, so their ids stay stable across restarts).

use std::collections::BTreeMap;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::model::{now_timestamp, VolumeType};
use crate::store::Db;

/// Types and zones this node serves.
#[derive(Debug, Clone)]
pub struct Catalog {
    /// Volume types, ordered by name.
    pub types: Vec<VolumeType>,
    /// Availability zones.
    pub zones: Vec<String>,
}

impl Catalog {
    /// Make sure every configured type exists as a row and every pool is registered, then load.
    pub async fn load(db: &Db, config: &Config) -> Result<Catalog> {
        let now = now_timestamp();
        for p in &config.pools {
            db.ensure_pool(&p.name).await?;
        }
        for name in config.volume_type_names() {
            let backends: Vec<&str> =
                config.pools.iter().filter(|p| p.volume_types.contains(&name)).map(|p| p.name.as_str()).collect();
            let mut specs = BTreeMap::new();
            specs.insert("volume_backend_name".to_string(), backends.join(","));
            let desc = (name == "__DEFAULT__").then_some("Default Volume Type");
            db.ensure_volume_type(&name, desc, &specs, &now).await?;
        }
        let served = config.volume_type_names();
        let types = db.list_volume_types().await?.into_iter().filter(|t| served.contains(&t.name)).collect();
        Ok(Catalog { types, zones: config.availability_zones() })
    }

    /// A type by id or by name.
    pub fn find_type(&self, id_or_name: &str) -> Option<&VolumeType> {
        self.types.iter().find(|t| t.id == id_or_name).or_else(|| self.types.iter().find(|t| t.name == id_or_name))
    }

    /// A type by id or name, or the reference's "invalid volume type" error.
    pub fn require_type(&self, id_or_name: &str) -> Result<&VolumeType> {
        self.find_type(id_or_name)
            .ok_or_else(|| Error::invalid("EVS.1020", format!("Volume type {id_or_name} could not be found.")))
    }
}
