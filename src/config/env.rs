//! `HYDROWATCH_*` environment overrides onto `hydrowatch.toml`, read in
//! one place: [`super::load`] is handed the environment.

use super::{err, ConfigError, Settings};

/// Applies `HYDROWATCH_SECTION__KEY=value` pairs onto the settings table;
/// deeper paths reach nested tables (`HYDROWATCH_NOTIFY__WEBHOOKS__OPS__SECRET`
/// sets `secret` of `[notify.webhooks.ops]`). Values are parsed as TOML
/// scalars when they can be (numbers, booleans), else taken as strings.
/// Unknown sections or keys are refused by the typed parse after.
pub(super) fn apply_env(
    table: &mut toml::Table,
    env: &[(String, String)],
) -> Result<(), ConfigError> {
    for (name, raw) in env {
        let Some(rest) = name.strip_prefix("HYDROWATCH_") else {
            continue;
        };
        // Variables read by the CLI itself, not settings.
        if matches!(rest, "CONFIG" | "LOG_FORMAT") {
            continue;
        }
        let parts: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
        let Some((key, path)) = parts
            .split_last()
            .filter(|(_, path)| !path.is_empty() && !parts.iter().any(|p| p.is_empty()))
        else {
            return Err(err(
                "environment",
                format!("{name}: expected HYDROWATCH_<SECTION>__<KEY>"),
            ));
        };
        let value = typed_like_default(path, key, raw);
        let mut at = &mut *table;
        for (depth, part) in path.iter().enumerate() {
            let entry = at
                .entry(part.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            at = entry.as_table_mut().ok_or_else(|| {
                err(
                    "environment",
                    format!("{name}: [{}] is not a section", path[..=depth].join(".")),
                )
            })?;
        }
        at.insert(key.clone(), value);
    }
    Ok(())
}

/// Reads an override as the type the setting has (a token of digits stays a
/// string); for keys without a default it guesses, and the typed parse refuses
/// unknown keys anyway.
fn typed_like_default(path: &[String], key: &str, raw: &str) -> toml::Value {
    let default = toml::Value::try_from(Settings::default())
        .ok()
        .and_then(|d| {
            path.iter()
                .try_fold(&d, |v, p| v.get(p.as_str()))
                .and_then(|s| s.get(key))
                .cloned()
        });
    match default {
        Some(toml::Value::String(_)) => toml::Value::String(raw.to_owned()),
        Some(toml::Value::Integer(_)) => raw
            .parse::<i64>()
            .map(toml::Value::Integer)
            .unwrap_or_else(|_| toml::Value::String(raw.to_owned())),
        Some(toml::Value::Float(_)) => raw
            .parse::<f64>()
            .map(toml::Value::Float)
            .unwrap_or_else(|_| toml::Value::String(raw.to_owned())),
        Some(toml::Value::Boolean(_)) => raw
            .parse::<bool>()
            .map(toml::Value::Boolean)
            .unwrap_or_else(|_| toml::Value::String(raw.to_owned())),
        _ => parse_scalar(raw),
    }
}

fn parse_scalar(raw: &str) -> toml::Value {
    if let Ok(i) = raw.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    if let Ok(f) = raw.parse::<f64>() {
        return toml::Value::Float(f);
    }
    if let Ok(b) = raw.parse::<bool>() {
        return toml::Value::Boolean(b);
    }
    toml::Value::String(raw.to_owned())
}
