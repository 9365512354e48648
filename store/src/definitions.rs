//! Alert rules and escalation policies created through the API: stored as
//! JSON with a version and who changed them, and read back whole at start-up
//! and after each change. Those in `plant.toml` are not stored.

use sqlx::Row;

use super::{Store, StoreError};

/// Which kind of definition: they share one table layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Definitions {
    /// `alert_rules`, keyed by the rule's id.
    Rules,
    /// `escalation_policies`, keyed by the policy's name.
    Policies,
}

impl Definitions {
    fn table(self) -> &'static str {
        match self {
            Definitions::Rules => "alert_rules",
            Definitions::Policies => "escalation_policies",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Definitions::Rules => "id",
            Definitions::Policies => "name",
        }
    }
}

/// One stored rule or policy; `spec` is its JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDefinition {
    /// Its id or name.
    pub key: String,
    /// Its JSON.
    pub spec: String,
    /// Raised by each change, from 1.
    pub version: i64,
    /// Who created it.
    pub created_by: String,
    /// When, ms since the epoch.
    pub created_at: i64,
    /// Who changed it last.
    pub updated_by: String,
    /// When, ms since the epoch.
    pub updated_at: i64,
}

/// How a replacement went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replaced {
    /// Stored; the new version.
    Done(i64),
    /// Nothing has that key.
    Missing,
    /// Its version is not the one the caller named; the one stored.
    Stale(i64),
}

impl Store {
    /// Every stored rule or policy, by key.
    pub async fn definitions(&self, of: Definitions) -> Result<Vec<StoredDefinition>, StoreError> {
        let text = format!(
            "SELECT {key}, spec, version, created_by, created_at, updated_by, updated_at \
             FROM {table} ORDER BY {key}",
            key = of.key(),
            table = of.table()
        );
        run!(self, |q, exec| {
            sqlx::query(q(text))
                .fetch_all(exec)
                .await?
                .iter()
                .map(|r| {
                    Ok(StoredDefinition {
                        key: r.try_get(0)?,
                        spec: r.try_get(1)?,
                        version: r.try_get(2)?,
                        created_by: r.try_get(3)?,
                        created_at: r.try_get(4)?,
                        updated_by: r.try_get(5)?,
                        updated_at: r.try_get(6)?,
                    })
                })
                .collect()
        })
    }

    /// Stores a new rule or policy at version 1; `false` when one with that
    /// key exists already (nothing is changed).
    pub async fn insert_definition(
        &self,
        of: Definitions,
        key: &str,
        spec: &str,
        by: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let text = format!(
            "INSERT INTO {table} ({key}, spec, version, created_by, created_at, updated_by, \
             updated_at) VALUES ($1, $2, 1, $3, $4, $3, $4) ON CONFLICT DO NOTHING",
            key = of.key(),
            table = of.table()
        );
        let done = run!(self, |q, exec| {
            sqlx::query(q(text))
                .bind(key)
                .bind(spec)
                .bind(by)
                .bind(now_ms)
                .execute(exec)
                .await?
                .rows_affected()
        });
        Ok(done == 1)
    }

    /// Replaces a stored rule or policy, only if it is at `expected` when
    /// that is given.
    pub async fn replace_definition(
        &self,
        of: Definitions,
        key: &str,
        spec: &str,
        by: &str,
        now_ms: i64,
        expected: Option<i64>,
    ) -> Result<Replaced, StoreError> {
        let text = format!(
            "UPDATE {table} SET spec = $2, version = version + 1, updated_by = $3, \
             updated_at = $4 WHERE {key} = $1 AND ($5 = 0 OR version = $5) RETURNING version",
            key = of.key(),
            table = of.table()
        );
        let version: Option<i64> = run!(self, |q, exec| {
            sqlx::query_scalar(q(text))
                .bind(key)
                .bind(spec)
                .bind(by)
                .bind(now_ms)
                .bind(expected.unwrap_or(0))
                .fetch_optional(exec)
                .await?
        });
        Ok(match version {
            Some(v) => Replaced::Done(v),
            None => match self.definition_version(of, key).await? {
                Some(current) => Replaced::Stale(current),
                None => Replaced::Missing,
            },
        })
    }

    /// Deletes a stored rule or policy; `false` when there is none.
    pub async fn delete_definition(&self, of: Definitions, key: &str) -> Result<bool, StoreError> {
        let text = format!(
            "DELETE FROM {table} WHERE {key} = $1",
            key = of.key(),
            table = of.table()
        );
        let done = run!(self, |q, exec| {
            sqlx::query(q(text))
                .bind(key)
                .execute(exec)
                .await?
                .rows_affected()
        });
        Ok(done == 1)
    }

    async fn definition_version(
        &self,
        of: Definitions,
        key: &str,
    ) -> Result<Option<i64>, StoreError> {
        let text = format!(
            "SELECT version FROM {table} WHERE {key} = $1",
            key = of.key(),
            table = of.table()
        );
        Ok(run!(self, |q, exec| {
            sqlx::query_scalar(q(text))
                .bind(key)
                .fetch_optional(exec)
                .await?
        }))
    }
}
