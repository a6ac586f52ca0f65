//! The model index: a SQLite database (sqlx, WAL) with one row per model in the store.
//!
//! This module owns the database file and its schema. The manifests in the [`Store`] are the
//! truth (that is what keeps an Ollama folder usable as it is); the index only caches what is
//! slow to learn from them: the GGUF metadata (architecture, parameter count, quantization,
//! context and embedding length), whether there is a chat template, the capabilities, and
//! the times. [`Registry::sync`] brings it up to date by comparing each manifest's digest
//! with the indexed one, so a model added, replaced or deleted behind our back (by Ollama, or
//! by hand) is noticed; [`Registry::rebuild_from_store`] re-reads everything. The database
//! can be deleted at any time: [`Registry::open`] creates it again (and also starts over from
//! an empty file when the existing one cannot be opened or migrated), and the next sync fills
//! it. It knows nothing about the network or the engine.
//!
//! Schema changes are versioned migrations in the crate's `migrations/` folder, embedded with
//! `sqlx::migrate!`. Queries are plain `sqlx::query` strings (no compile-time checking, so
//! building needs no database).
//!
//! # Invariants
//!
//! - After [`Registry::sync`] or [`Registry::rebuild_from_store`] returns, there is exactly
//!   one row per readable manifest, and each row's digest is its manifest's digest.
//! - `created_at` and `last_used_at` survive re-indexing a model whose manifest changed; they
//!   are lost only when the database is deleted.
//! - Rows are keyed by the full name as spelled on disk; lookups ignore ASCII case, as Ollama.

mod inspect;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::Row;

use crate::digest::BlobDigest;
use crate::name::ModelName;
use crate::store::{Store, StoreError, StoredManifest};

pub use inspect::Capabilities;

/// What went wrong with the index.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The database could not be opened or created.
    #[error("cannot open the model index {}", path.display())]
    Open {
        /// The database file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: sqlx::Error,
    },
    /// The schema could not be brought to the current version.
    #[error("cannot migrate the model index {}", path.display())]
    Migrate {
        /// The database file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// A query failed.
    #[error("model index query failed: {op}")]
    Query {
        /// What was being done.
        op: &'static str,
        /// The underlying error.
        #[source]
        source: sqlx::Error,
    },
    /// A stored row could not be read back.
    #[error("model index row {name:?} is invalid: {reason}")]
    BadRow {
        /// The row's name column.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Reading the store failed.
    #[error("cannot read the model store")]
    Store(#[source] StoreError),
    /// A blocking task panicked or was cancelled.
    #[error("model indexing task failed")]
    Task(#[source] tokio::task::JoinError),
}

/// One indexed model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelRecord {
    /// The name, casing as on disk.
    pub name: ModelName,
    /// The SHA-256 of the manifest file (Ollama's model digest).
    pub digest: BlobDigest,
    /// Total size of the config and layers, in bytes; for a safetensors folder outside the
    /// store, plus the folder's safetensors files.
    pub size: u64,
    /// The weights' format: `gguf`, `safetensors` or `huggingface`.
    pub format: String,
    /// `general.architecture` (or the config's `model_family`).
    pub architecture: Option<String>,
    /// The number of parameters (sum of tensor elements).
    pub parameter_count: Option<u64>,
    /// The quantization label, e.g. `Q4_K_M`.
    pub quantization: Option<String>,
    /// The trained context length.
    pub context_length: Option<u64>,
    /// The embedding width.
    pub embedding_length: Option<u64>,
    /// Whether the GGUF or a template layer carries a chat template.
    pub has_chat_template: bool,
    /// What the model can do.
    pub capabilities: Capabilities,
    /// Why the metadata could not be fully read (e.g. a corrupt GGUF), if so.
    pub index_error: Option<String>,
    /// When this index first saw the model.
    pub created_at: SystemTime,
    /// The manifest's modification time.
    pub modified_at: SystemTime,
    /// When the model was last used, if ever since indexing.
    pub last_used_at: Option<SystemTime>,
}

/// What a sync changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Models indexed for the first time.
    pub added: Vec<ModelName>,
    /// Models re-indexed because their manifest changed.
    pub updated: Vec<ModelName>,
    /// Rows deleted because their manifest is gone.
    pub removed: Vec<ModelName>,
    /// Manifests that could not be read, with the reason (not indexed).
    pub broken: Vec<(ModelName, String)>,
}

/// The model index.
#[derive(Clone, Debug)]
pub struct Registry {
    pool: SqlitePool,
    path: PathBuf,
}

/// The columns of a row, in `SELECT` order.
const COLUMNS: &str = "name, digest, size, architecture, parameter_count, quantization, \
     context_length, embedding_length, has_chat_template, capabilities, index_error, \
     created_at, modified_at, last_used_at, format";

impl Registry {
    /// Opens (creating if needed) the index at `path`, in WAL mode, and migrates it. A file
    /// that cannot be opened or migrated as a database is deleted and created anew: it only
    /// caches what the store holds.
    pub async fn open(path: &Path) -> Result<Self, RegistryError> {
        match Self::try_open(path).await {
            Ok(registry) => Ok(registry),
            Err(RegistryError::Migrate { .. } | RegistryError::Open { .. }) if path.exists() => {
                for suffix in ["", "-wal", "-shm"] {
                    let mut file = path.as_os_str().to_owned();
                    file.push(suffix);
                    let _ = std::fs::remove_file(PathBuf::from(file));
                }
                Self::try_open(path).await
            }
            Err(e) => Err(e),
        }
    }

    /// Opens and migrates once.
    async fn try_open(path: &Path) -> Result<Self, RegistryError> {
        let open_error = |source| RegistryError::Open {
            path: path.to_path_buf(),
            source,
        };
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(open_error)?;
        let migrated = sqlx::migrate!().run(&pool).await;
        if let Err(source) = migrated {
            pool.close().await;
            return Err(RegistryError::Migrate {
                path: path.to_path_buf(),
                source,
            });
        }
        Ok(Registry {
            pool,
            path: path.to_path_buf(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Closes the connections (pending writes are already committed).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Brings the index up to date with the store: manifests that are new or whose digest
    /// changed are (re-)indexed, rows without a manifest are deleted.
    pub async fn sync(&self, store: &Store) -> Result<SyncReport, RegistryError> {
        self.sync_inner(store, false).await
    }

    /// Re-indexes every manifest, as after deleting the database.
    pub async fn rebuild_from_store(&self, store: &Store) -> Result<SyncReport, RegistryError> {
        self.sync_inner(store, true).await
    }

    /// See [`Registry::sync`]; `all` re-indexes unchanged manifests too.
    async fn sync_inner(&self, store: &Store, all: bool) -> Result<SyncReport, RegistryError> {
        let indexed: HashMap<String, String> = sqlx::query("SELECT name, digest FROM models")
            .fetch_all(&self.pool)
            .await
            .map_err(query("list digests"))?
            .into_iter()
            .map(|row| (row.get::<String, _>(0), row.get::<String, _>(1)))
            .collect();
        let store = store.clone();
        let (report, rows) = tokio::task::spawn_blocking(move || {
            let list = store.list_manifests().map_err(RegistryError::Store)?;
            let mut report = SyncReport::default();
            let mut rows = Vec::new();
            for stored in &list.manifests {
                let key = stored.name.to_string();
                match indexed.get(&key) {
                    Some(digest) if !all && *digest == stored.digest.to_string() => continue,
                    Some(_) => report.updated.push(stored.name.clone()),
                    None => report.added.push(stored.name.clone()),
                }
                rows.push(record_for(&store, stored));
            }
            let present: std::collections::HashSet<String> = list
                .manifests
                .iter()
                .map(|m| m.name.to_string())
                .chain(list.broken.iter().map(|b| b.name.to_string()))
                .collect();
            for name in indexed.keys().filter(|n| !present.contains(*n)) {
                if let Ok(name) = ModelName::parse(name) {
                    report.removed.push(name);
                }
            }
            for broken in list.broken {
                report
                    .broken
                    .push((broken.name, inspect::error_chain(&broken.error)));
            }
            Ok::<_, RegistryError>((report, rows))
        })
        .await
        .map_err(RegistryError::Task)??;
        let mut tx = self.pool.begin().await.map_err(query("begin"))?;
        for record in &rows {
            upsert(&mut tx, record).await?;
        }
        // Broken manifests lose their row too: they cannot be used until fixed.
        let stale = report
            .removed
            .iter()
            .chain(report.broken.iter().map(|(n, _)| n));
        for name in stale {
            sqlx::query("DELETE FROM models WHERE name = ?")
                .bind(name.to_string())
                .execute(&mut *tx)
                .await
                .map_err(query("delete"))?;
        }
        tx.commit().await.map_err(query("commit"))?;
        Ok(report)
    }

    /// Indexes one model now (after a `create` or `pull` wrote its manifest) and returns its
    /// record.
    pub async fn index(
        &self,
        store: &Store,
        name: &ModelName,
    ) -> Result<ModelRecord, RegistryError> {
        let store = store.clone();
        let name = name.clone();
        let record = tokio::task::spawn_blocking(move || {
            let stored = store.read_manifest(&name).map_err(RegistryError::Store)?;
            Ok::<_, RegistryError>(record_for(&store, &stored))
        })
        .await
        .map_err(RegistryError::Task)??;
        let mut conn = self.pool.acquire().await.map_err(query("connect"))?;
        upsert(&mut conn, &record).await?;
        self.get(&record.name).await?.ok_or(RegistryError::BadRow {
            name: record.name.to_string(),
            reason: "vanished right after being written",
        })
    }

    /// Every indexed model, sorted by name.
    pub async fn list(&self) -> Result<Vec<ModelRecord>, RegistryError> {
        let sql = format!("SELECT {COLUMNS} FROM models ORDER BY name");
        sqlx::query(&sql)
            .fetch_all(&self.pool)
            .await
            .map_err(query("list"))?
            .iter()
            .map(from_row)
            .collect()
    }

    /// The model named `name`: the exact name, else one equal to it ignoring ASCII case.
    pub async fn get(&self, name: &ModelName) -> Result<Option<ModelRecord>, RegistryError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM models WHERE name = ?1 OR name_key = ?2 \
             ORDER BY name = ?1 DESC, name LIMIT 1"
        );
        let row = sqlx::query(&sql)
            .bind(name.to_string())
            .bind(name.case_folded().to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(query("get"))?;
        row.as_ref().map(from_row).transpose()
    }

    /// Records that `name` was used at `at`. Returns whether the model is indexed.
    pub async fn touch_last_used(
        &self,
        name: &ModelName,
        at: SystemTime,
    ) -> Result<bool, RegistryError> {
        let Some(record) = self.get(name).await? else {
            return Ok(false);
        };
        let done = sqlx::query("UPDATE models SET last_used_at = ? WHERE name = ?")
            .bind(millis(at))
            .bind(record.name.to_string())
            .execute(&self.pool)
            .await
            .map_err(query("touch"))?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes the row of `name` (after the manifest was deleted). Returns whether there was
    /// one.
    pub async fn remove(&self, name: &ModelName) -> Result<bool, RegistryError> {
        let Some(record) = self.get(name).await? else {
            return Ok(false);
        };
        let done = sqlx::query("DELETE FROM models WHERE name = ?")
            .bind(record.name.to_string())
            .execute(&self.pool)
            .await
            .map_err(query("delete"))?;
        Ok(done.rows_affected() > 0)
    }
}

/// A [`RegistryError::Query`] builder for `map_err`.
fn query(op: &'static str) -> impl FnOnce(sqlx::Error) -> RegistryError {
    move |source| RegistryError::Query { op, source }
}

/// The record of a stored manifest (timestamps `created_at`/`last_used_at` are placeholders
/// that [`upsert`] keeps from an existing row).
fn record_for(store: &Store, stored: &StoredManifest) -> ModelRecord {
    let facts = inspect::inspect(store, stored);
    ModelRecord {
        name: stored.name.clone(),
        digest: stored.digest,
        size: stored
            .manifest
            .total_size()
            .saturating_add(facts.outside_size),
        format: facts.format.clone(),
        architecture: facts.architecture,
        parameter_count: facts.parameter_count,
        quantization: facts.quantization,
        context_length: facts.context_length,
        embedding_length: facts.embedding_length,
        has_chat_template: facts.has_chat_template,
        capabilities: facts.capabilities,
        index_error: facts.index_error,
        created_at: SystemTime::now().min(stored.modified),
        modified_at: stored.modified,
        last_used_at: None,
    }
}

/// Inserts or replaces a row, keeping `created_at` and `last_used_at` of an existing one.
async fn upsert(conn: &mut sqlx::SqliteConnection, r: &ModelRecord) -> Result<(), RegistryError> {
    sqlx::query(
        "INSERT INTO models (name, name_key, digest, size, architecture, parameter_count, \
         quantization, context_length, embedding_length, has_chat_template, capabilities, \
         index_error, created_at, modified_at, last_used_at, format) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?) \
         ON CONFLICT (name) DO UPDATE SET name_key = excluded.name_key, \
         digest = excluded.digest, size = excluded.size, architecture = excluded.architecture, \
         parameter_count = excluded.parameter_count, quantization = excluded.quantization, \
         context_length = excluded.context_length, embedding_length = excluded.embedding_length, \
         has_chat_template = excluded.has_chat_template, capabilities = excluded.capabilities, \
         index_error = excluded.index_error, modified_at = excluded.modified_at, \
         format = excluded.format",
    )
    .bind(r.name.to_string())
    .bind(r.name.case_folded().to_string())
    .bind(r.digest.to_string())
    .bind(to_i64(r.size))
    .bind(&r.architecture)
    .bind(r.parameter_count.map(to_i64))
    .bind(&r.quantization)
    .bind(r.context_length.map(to_i64))
    .bind(r.embedding_length.map(to_i64))
    .bind(r.has_chat_template)
    .bind(r.capabilities.names().join(","))
    .bind(&r.index_error)
    .bind(millis(r.created_at))
    .bind(millis(r.modified_at))
    .bind(&r.format)
    .execute(conn)
    .await
    .map_err(query("upsert"))?;
    Ok(())
}

/// Reads a row selected with [`COLUMNS`].
fn from_row(row: &sqlx::sqlite::SqliteRow) -> Result<ModelRecord, RegistryError> {
    let raw_name: String = row.try_get(0).map_err(query("read name"))?;
    let bad = |reason| RegistryError::BadRow {
        name: raw_name.clone(),
        reason,
    };
    let get_u64 = |idx: usize| -> Result<Option<u64>, RegistryError> {
        let v: Option<i64> = row.try_get(idx).map_err(query("read column"))?;
        Ok(v.and_then(|v| u64::try_from(v).ok()))
    };
    let name = ModelName::parse(&raw_name).map_err(|_| bad("the name does not parse"))?;
    let digest: String = row.try_get(1).map_err(query("read digest"))?;
    let digest = BlobDigest::from_str(&digest).map_err(|_| bad("the digest does not parse"))?;
    let capabilities: String = row.try_get(9).map_err(query("read capabilities"))?;
    let last_used: Option<i64> = row.try_get(13).map_err(query("read last_used_at"))?;
    Ok(ModelRecord {
        name,
        digest,
        size: get_u64(2)?.unwrap_or(0),
        format: row.try_get(14).map_err(query("read format"))?,
        architecture: row.try_get(3).map_err(query("read architecture"))?,
        parameter_count: get_u64(4)?,
        quantization: row.try_get(5).map_err(query("read quantization"))?,
        context_length: get_u64(6)?,
        embedding_length: get_u64(7)?,
        has_chat_template: row.try_get(8).map_err(query("read has_chat_template"))?,
        capabilities: Capabilities::from_names(capabilities.split(',')),
        index_error: row.try_get(10).map_err(query("read index_error"))?,
        created_at: from_millis(row.try_get(11).map_err(query("read created_at"))?),
        modified_at: from_millis(row.try_get(12).map_err(query("read modified_at"))?),
        last_used_at: last_used.map(from_millis),
    })
}

/// SQLite integers are signed; sizes past `i64::MAX` do not occur and saturate.
fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Unix milliseconds (negative before 1970).
fn millis(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

/// The time of Unix milliseconds.
fn from_millis(ms: i64) -> SystemTime {
    let magnitude = Duration::from_millis(ms.unsigned_abs());
    if ms >= 0 {
        UNIX_EPOCH + magnitude
    } else {
        UNIX_EPOCH - magnitude
    }
}
