//! Records of the misc admin APIs: a volume type's encryption specs and a project's default type.

/// A volume type's encryption record (Cinder's `encryption` table). Only the record is kept:
/// cinderblock does not encrypt data itself, the consumer does (`front-end`) as with Cinder's
/// LUKS encryptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeEncryption {
    /// The type it belongs to.
    pub volume_type_id: String,
    /// Its own id (Cinder's `encryption_id`).
    pub encryption_id: String,
    /// Encryptor class or name (`luks`, `LuksEncryptor`...).
    pub provider: String,
    /// Cipher, e.g. `aes-xts-plain64`.
    pub cipher: Option<String>,
    /// Key size in bits.
    pub key_size: Option<i64>,
    /// `front-end` or `back-end`.
    pub control_location: String,
    /// Creation time.
    pub created_at: String,
    /// Last change.
    pub updated_at: Option<String>,
}

/// A project's default volume type (3.62).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultType {
    /// The project.
    pub project_id: String,
    /// Its default type.
    pub volume_type_id: String,
}
