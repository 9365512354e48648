//! The wall clock every part of hydrowatch stamps with. Time that only
//! measures intervals uses tokio's clock instead, so that tests can pause it.

/// Milliseconds since the Unix epoch (0 if the system clock is before it).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
