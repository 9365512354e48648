//! API keys: only their SHA-256 is kept; found by it on each request.

use sqlx::Row;

use super::{Store, StoreError};

/// An API key as stored (never the key itself).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiKeyRecord {
    pub id: i64,
    /// The admin who made it; it acts as them, within its scopes.
    pub user_id: i64,
    /// What it is for.
    pub name: String,
    /// The key's first characters, to tell keys apart.
    pub prefix: String,
    /// Permission names it may use.
    pub scopes: Vec<String>,
    /// Requests at once.
    pub rate_burst: i64,
    /// Requests a minute after that.
    pub rate_per_min: i64,
    /// Made, ms since the epoch.
    pub created_at: i64,
    /// Stops working, ms since the epoch (none: never).
    pub expires_at: Option<i64>,
    /// Last used, ms since the epoch.
    pub last_used_at: Option<i64>,
    /// Requests made with it.
    pub usage_count: i64,
    /// Revoked, ms since the epoch.
    pub revoked_at: Option<i64>,
}

/// A key to store.
#[derive(Debug, Clone)]
pub struct NewApiKey<'a> {
    /// Its maker.
    pub user_id: i64,
    /// What it is for.
    pub name: &'a str,
    /// Its first characters.
    pub prefix: &'a str,
    /// SHA-256 of the key, hex.
    pub hash: &'a str,
    /// Permission names.
    pub scopes: &'a [String],
    /// Requests at once.
    pub rate_burst: i64,
    /// Requests a minute.
    pub rate_per_min: i64,
    /// Made, ms.
    pub created_at: i64,
    /// Expires, ms.
    pub expires_at: Option<i64>,
}

const COLUMNS: &str = "id, user_id, name, prefix, scopes, rate_burst, rate_per_min, created_at, \
     expires_at, last_used_at, usage_count, revoked_at";

fn key_of<R: Row>(r: &R) -> Result<ApiKeyRecord, StoreError>
where
    usize: sqlx::ColumnIndex<R>,
    i64: for<'d> sqlx::Decode<'d, R::Database> + sqlx::Type<R::Database>,
    String: for<'d> sqlx::Decode<'d, R::Database> + sqlx::Type<R::Database>,
{
    let id: i64 = r.try_get(0)?;
    let scopes: String = r.try_get(4)?;
    Ok(ApiKeyRecord {
        id,
        user_id: r.try_get(1)?,
        name: r.try_get(2)?,
        prefix: r.try_get(3)?,
        scopes: serde_json::from_str(&scopes)
            .map_err(|e| StoreError::Corrupt(format!("api key {id}: scopes: {e}")))?,
        rate_burst: r.try_get(5)?,
        rate_per_min: r.try_get(6)?,
        created_at: r.try_get(7)?,
        expires_at: r.try_get(8)?,
        last_used_at: r.try_get(9)?,
        usage_count: r.try_get(10)?,
        revoked_at: r.try_get(11)?,
    })
}

impl Store {
    /// Stores a new key; the key as stored.
    pub async fn create_api_key(&self, key: &NewApiKey<'_>) -> Result<ApiKeyRecord, StoreError> {
        let scopes = serde_json::to_string(key.scopes)
            .map_err(|e| StoreError::Invalid(format!("scopes: {e}")))?;
        let text = "INSERT INTO api_keys (user_id, name, prefix, hash, scopes, rate_burst, \
                    rate_per_min, created_at, expires_at) \
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING "
            .to_owned()
            + COLUMNS;
        run!(self, |q, exec| {
            let row = sqlx::query(q(text))
                .bind(key.user_id)
                .bind(key.name)
                .bind(key.prefix)
                .bind(key.hash)
                .bind(&scopes)
                .bind(key.rate_burst)
                .bind(key.rate_per_min)
                .bind(key.created_at)
                .bind(key.expires_at)
                .fetch_one(exec)
                .await?;
            key_of(&row)
        })
    }

    /// The key with this SHA-256, revoked or not.
    pub async fn api_key_by_hash(&self, hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let text = format!("SELECT {COLUMNS} FROM api_keys WHERE hash = $1");
        run!(self, |q, exec| {
            match sqlx::query(q(text)).bind(hash).fetch_optional(exec).await? {
                Some(r) => key_of(&r).map(Some),
                None => Ok(None),
            }
        })
    }

    /// Every key, newest first.
    pub async fn api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let text = format!("SELECT {COLUMNS} FROM api_keys ORDER BY id DESC");
        run!(self, |q, exec| {
            sqlx::query(q(text))
                .fetch_all(exec)
                .await?
                .iter()
                .map(key_of)
                .collect()
        })
    }

    /// Revokes a key; false when there is no such key not yet revoked.
    pub async fn revoke_api_key(&self, id: i64, now_ms: i64) -> Result<bool, StoreError> {
        self.stamp_once("api_keys", "revoked_at", id, now_ms).await
    }

    /// Counts uses of a key.
    pub async fn count_api_key_uses(
        &self,
        id: i64,
        uses: i64,
        last_ms: i64,
    ) -> Result<(), StoreError> {
        let text = "UPDATE api_keys SET usage_count = usage_count + $2, \
                    last_used_at = $3 WHERE id = $1"
            .to_owned();
        run!(self, |q, exec| {
            sqlx::query(q(text))
                .bind(id)
                .bind(uses)
                .bind(last_ms)
                .execute(exec)
                .await?;
            Ok(())
        })
    }
}
