//! State that must hold across nodes: which sessions ended, which users
//! changed, and rate-limit buckets. In Redis when `[redis] url` is set, so
//! that every node sharing it sees a logout, a forced logout or a spent
//! bucket at once; in this process otherwise (one node), with the database
//! as the truth about sessions either way.
//!
//! Redis is an accelerator, never the only guard: when it fails, a request
//! is checked against the database and buckets fall back to this process,
//! with a warning and `hydrowatch_redis_errors_total`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// `[redis]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisSettings {
    /// `redis://HOST:PORT/DB`; empty: no Redis (one node).
    pub url: String,
    /// Prefix of every key (several installations may share a server).
    pub key_prefix: String,
    /// Longest wait for a connection or an answer, ms.
    pub timeout_ms: u64,
}

impl Default for RedisSettings {
    fn default() -> Self {
        RedisSettings {
            url: String::new(),
            key_prefix: "hydrowatch:".into(),
            timeout_ms: 500,
        }
    }
}

impl RedisSettings {
    /// Checks the settings (at start-up).
    pub fn validate(&self) -> Result<(), String> {
        if !self.url.is_empty() && !self.url.starts_with("redis://") {
            return Err("redis.url: redis://HOST:PORT[/DB], or empty for none".into());
        }
        if self.timeout_ms == 0 {
            return Err("redis.timeout_ms: at least 1".into());
        }
        Ok(())
    }
}

/// A token bucket: `burst` requests at once, refilled at `per_min` a
/// minute.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    /// Requests allowed at once.
    pub burst: u32,
    /// Requests allowed per minute after that.
    pub per_min: u32,
}

impl Rate {
    /// Checks a rate (`what` names it in the message).
    pub fn validate(&self, what: &str) -> Result<(), String> {
        if self.burst == 0 || self.per_min == 0 {
            return Err(format!("{what}: burst and per_min at least 1"));
        }
        Ok(())
    }

    fn per_sec(&self) -> f64 {
        f64::from(self.per_min) / 60.0
    }
}

/// Token buckets in this process.
#[derive(Debug, Default)]
pub struct LocalBuckets {
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

/// Buckets remembered at most; beyond it, full (idle) ones are forgotten.
const MAX_BUCKETS: usize = 100_000;

impl LocalBuckets {
    /// Takes a token from bucket `key`: `Err(wait)` when it is empty.
    pub fn take(&self, key: &str, rate: Rate) -> Result<(), Duration> {
        self.take_at(key, f64::from(rate.burst), rate.per_sec())
    }

    /// Takes a token from bucket `key` of `burst` tokens refilled at
    /// `per_sec`: `Err(wait)` when it is empty.
    pub fn take_at(&self, key: &str, burst: f64, per_sec: f64) -> Result<(), Duration> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(key) {
            // A flood of new keys must not grow memory without bound.
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * per_sec < burst
            });
            if buckets.len() >= MAX_BUCKETS {
                buckets.clear();
            }
        }
        let (tokens, at) = buckets.entry(key.to_owned()).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * per_sec).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::try_from_secs_f64((1.0 - *tokens) / per_sec).unwrap_or(Duration::MAX))
        }
    }
}

/// A token bucket in Redis, atomic across nodes: tokens and the time they
/// were counted, in a hash that expires once it would be full again. The
/// server's clock counts, so nodes' clocks need not agree.
const TAKE: &str = r"
local burst = tonumber(ARGV[1])
local per_ms = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(b[1]) or burst
local at = tonumber(b[2]) or now
tokens = math.min(burst, tokens + (now - at) * per_ms)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = math.ceil((1 - tokens) / per_ms)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', now)
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / per_ms) + 1000)
return wait
";

/// A connection to Redis and the key prefix.
#[derive(Clone)]
pub struct Redis {
    conn: redis::aio::ConnectionManager,
    prefix: String,
    take: std::sync::Arc<redis::Script>,
}

impl Redis {
    /// Connects (within the configured timeout).
    pub async fn connect(settings: &RedisSettings) -> Result<Redis, String> {
        let timeout = Duration::from_millis(settings.timeout_ms);
        let client = redis::Client::open(settings.url.as_str()).map_err(|e| e.to_string())?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1);
        let conn = tokio::time::timeout(
            timeout * 4,
            redis::aio::ConnectionManager::new_with_config(client, config),
        )
        .await
        .map_err(|_| format!("no answer within {} ms", settings.timeout_ms * 4))?
        .map_err(|e| e.to_string())?;
        Ok(Redis {
            conn,
            prefix: settings.key_prefix.clone(),
            take: std::sync::Arc::new(redis::Script::new(TAKE)),
        })
    }

    fn key(&self, parts: &[&str]) -> String {
        format!("{}{}", self.prefix, parts.join(":"))
    }

    /// Marks a session ended, for `ttl` (as long as its tokens could live).
    pub async fn revoke(&self, session_id: &str, ttl: Duration) -> redis::RedisResult<()> {
        let mut conn = self.conn.clone();
        redis::cmd("SET")
            .arg(self.key(&["revoked", session_id]))
            .arg(1)
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64)
            .query_async(&mut conn)
            .await
    }

    /// Marks a user changed at `at_ms` (role, deletion, password), for `ttl`.
    pub async fn user_changed(
        &self,
        user_id: i64,
        at_ms: i64,
        ttl: Duration,
    ) -> redis::RedisResult<()> {
        let mut conn = self.conn.clone();
        redis::cmd("SET")
            .arg(self.key(&["user-changed", &user_id.to_string()]))
            .arg(at_ms)
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64)
            .query_async(&mut conn)
            .await
    }

    /// Whether the session ended, and when its user last changed (ms), in
    /// one round trip.
    pub async fn check(
        &self,
        session_id: &str,
        user_id: i64,
    ) -> redis::RedisResult<(bool, Option<i64>)> {
        let mut conn = self.conn.clone();
        let (revoked, changed): (Option<i64>, Option<i64>) = redis::cmd("MGET")
            .arg(self.key(&["revoked", session_id]))
            .arg(self.key(&["user-changed", &user_id.to_string()]))
            .query_async(&mut conn)
            .await?;
        Ok((revoked.is_some(), changed))
    }

    /// Takes a token from bucket `name`: `Ok(Err(wait))` when it is empty.
    pub async fn take(&self, name: &str, rate: Rate) -> redis::RedisResult<Result<(), Duration>> {
        let mut conn = self.conn.clone();
        let per_ms = rate.per_sec() / 1000.0;
        let wait: i64 = self
            .take
            .key(self.key(&["bucket", name]))
            .arg(rate.burst)
            .arg(per_ms)
            .invoke_async(&mut conn)
            .await?;
        Ok(if wait <= 0 {
            Ok(())
        } else {
            Err(Duration::from_millis(wait as u64))
        })
    }
}

/// The shared state: Redis when configured, this process otherwise.
pub struct CrossNode {
    redis: Option<Redis>,
    local: LocalBuckets,
}

fn redis_failed(what: &str, e: &redis::RedisError) {
    metrics::counter!("hydrowatch_redis_errors_total").increment(1);
    tracing::warn!(error = %e, what, "redis failed; falling back to this node");
}

impl CrossNode {
    /// Cross-node state in `redis`, or in this process.
    pub fn new(redis: Option<Redis>) -> CrossNode {
        CrossNode {
            redis,
            local: LocalBuckets::default(),
        }
    }

    /// Whether Redis is configured.
    pub fn has_redis(&self) -> bool {
        self.redis.is_some()
    }

    /// Takes a token from bucket `name` (`login-ip:127.0.0.1`…): `Err(wait)`
    /// when it is empty.
    pub async fn take(&self, name: &str, rate: Rate) -> Result<(), Duration> {
        if let Some(redis) = &self.redis {
            match redis.take(name, rate).await {
                Ok(answer) => return answer,
                Err(e) => redis_failed("rate limit", &e),
            }
        }
        self.local.take(name, rate)
    }

    /// Tells every node that a session ended (for `ttl`).
    pub async fn revoke(&self, session_id: &str, ttl: Duration) {
        if let Some(redis) = &self.redis {
            if let Err(e) = redis.revoke(session_id, ttl).await {
                redis_failed("revocation", &e);
            }
        }
    }

    /// Tells every node that a user changed (for `ttl`).
    pub async fn user_changed(&self, user_id: i64, at_ms: i64, ttl: Duration) {
        if let Some(redis) = &self.redis {
            if let Err(e) = redis.user_changed(user_id, at_ms, ttl).await {
                redis_failed("user change", &e);
            }
        }
    }

    /// Whether the session ended and when its user last changed: `None`
    /// when only the database can say (no Redis, or it failed).
    pub async fn check(&self, session_id: &str, user_id: i64) -> Option<(bool, Option<i64>)> {
        let redis = self.redis.as_ref()?;
        match redis.check(session_id, user_id).await {
            Ok(answer) => Some(answer),
            Err(e) => {
                redis_failed("session check", &e);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_gives_its_burst_then_its_rate() {
        let buckets = LocalBuckets::default();
        let rate = Rate {
            burst: 3,
            per_min: 60,
        };
        for _ in 0..3 {
            assert_eq!(buckets.take("a", rate), Ok(()));
        }
        let wait = buckets.take("a", rate).unwrap_err();
        assert!(
            wait <= Duration::from_secs(1) && wait > Duration::from_millis(900),
            "{wait:?}"
        );
        assert_eq!(
            buckets.take("b", rate),
            Ok(()),
            "another key has its own bucket"
        );
    }
}
