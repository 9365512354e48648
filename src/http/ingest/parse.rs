//! Reading an ingest request: the body within its limit, its rows as JSON
//! or CSV (fields kept as text, so that a bad row can be quarantined as it
//! came), and its batch id.

use std::collections::HashMap;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap};
use serde_json::Value;

use crate::http::error::ApiError;

/// A request as read: its rows, its batch id, and a digest of its body that
/// tells a retry from another request under the same batch id.
pub(super) struct Parsed {
    pub(super) batch_id: Option<String>,
    pub(super) rows: Vec<RawRow>,
    pub(super) sha256: String,
}

/// The body, refused beyond `limit` bytes whether or not the client said
/// its length.
pub(super) async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::PayloadTooLarge(format!(
            "the body is limited to {limit} bytes (ingest.max_body_bytes)"
        ))
    };
    if content_length(headers).is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| too_large())
}

/// The rows and batch id of a body of at most `max_rows` rows.
pub(super) fn parse(
    headers: &HeaderMap,
    query: Option<&str>,
    body: &[u8],
    max_rows: usize,
) -> Result<Parsed, ApiError> {
    let kind = content_kind(headers)?;
    let (body_batch_id, rows) = match kind {
        Kind::Json => parse_json(body)?,
        Kind::Csv => (None, parse_csv(body)?),
    };
    if rows.len() > max_rows {
        return Err(ApiError::PayloadTooLarge(format!(
            "{} rows; a request may carry {max_rows} (ingest.max_rows)",
            rows.len()
        )));
    }
    Ok(Parsed {
        batch_id: batch_id(headers, query, body_batch_id)?,
        rows,
        sha256: request_sha256(kind, body),
    })
}

fn request_sha256(kind: Kind, body: &[u8]) -> String {
    use sha2::Digest;
    let mut hash = sha2::Sha256::new();
    hash.update(if matches!(kind, Kind::Json) {
        b"json:"
    } else {
        b"csv: "
    });
    hash.update(body);
    format!("{:x}", hash.finalize())
}

/// A row as received, fields as text for quarantine.
#[derive(Debug, Default)]
pub(super) struct RawRow {
    pub(super) equipment: Option<String>,
    pub(super) sensor: Option<String>,
    pub(super) ts: Option<String>,
    pub(super) value: Option<String>,
    pub(super) unit: Option<String>,
    /// Set when the row could not even be split into fields.
    pub(super) malformed: Option<String>,
    /// The value as a JSON number, when it was one.
    pub(super) number: Option<f64>,
}

#[derive(Clone, Copy)]
enum Kind {
    Json,
    Csv,
}

fn content_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn content_kind(headers: &HeaderMap) -> Result<Kind, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/json" => Ok(Kind::Json),
        "text/csv" | "application/csv" => Ok(Kind::Csv),
        _ => Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type {ct:?}: send application/json or text/csv"
        ))),
    }
}

fn batch_id(
    headers: &HeaderMap,
    query: Option<&str>,
    in_body: Option<String>,
) -> Result<Option<String>, ApiError> {
    let from_header = match headers.get("idempotency-key") {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| ApiError::invalid("Idempotency-Key", "not visible ASCII"))?
                .to_owned(),
        ),
        None => None,
    };
    let from_query = query.and_then(|q| {
        q.split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == "batch_id")
            .map(|(_, v)| v.to_owned())
    });
    let mut found: Option<(&str, String)> = None;
    for (field, id) in [
        ("batch_id", in_body),
        ("Idempotency-Key", from_header),
        ("batch_id", from_query),
    ] {
        let Some(id) = id else { continue };
        let ok = (1..=128).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-_:".contains(&b));
        if !ok {
            return Err(ApiError::invalid(
                field,
                "a batch id is 1 to 128 of A-Z a-z 0-9 . _ : -",
            ));
        }
        match &found {
            Some((_, first)) if *first != id => {
                return Err(ApiError::invalid(
                    field,
                    "batch ids given in more than one place differ",
                ))
            }
            _ => found = Some((field, id)),
        }
    }
    Ok(found.map(|(_, id)| id))
}

fn parse_json(body: &[u8]) -> Result<(Option<String>, Vec<RawRow>), ApiError> {
    let doc: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid("body", format!("not JSON: {e}")))?;
    let (batch_id, rows) = match doc {
        Value::Array(rows) => (None, rows),
        Value::Object(mut map) => {
            let batch_id = match map.remove("batch_id") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s),
                Some(_) => return Err(ApiError::invalid("batch_id", "must be a string")),
            };
            match map.remove("rows") {
                Some(Value::Array(rows)) => (batch_id, rows),
                _ => return Err(ApiError::invalid("rows", "expected an array of rows")),
            }
        }
        _ => {
            return Err(ApiError::invalid(
                "body",
                "expected an object with `rows` or an array of rows",
            ))
        }
    };
    let text = |v: Option<&Value>| -> Option<String> {
        match v? {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    };
    Ok((
        batch_id,
        rows.into_iter()
            .map(|row| match row {
                Value::Object(map) => RawRow {
                    equipment: text(map.get("equipment")),
                    sensor: text(map.get("sensor")),
                    ts: text(map.get("ts")),
                    value: text(map.get("value")),
                    unit: text(map.get("unit")),
                    malformed: None,
                    number: map.get("value").and_then(Value::as_f64),
                },
                other => RawRow {
                    malformed: Some(other.to_string()),
                    ..RawRow::default()
                },
            })
            .collect(),
    ))
}

fn parse_csv(body: &[u8]) -> Result<Vec<RawRow>, ApiError> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(body);
    let header = reader
        .headers()
        .map_err(|e| ApiError::invalid("body", format!("CSV header: {e}")))?
        .clone();
    let column = |name: &str| header.iter().position(|h| h.eq_ignore_ascii_case(name));
    let mut index = HashMap::new();
    for name in ["equipment", "sensor", "ts", "value"] {
        let i = column(name).ok_or_else(|| {
            ApiError::invalid(
                "body",
                format!("the CSV header must name equipment, sensor, ts, value (and optionally unit); {name} is missing"),
            )
        })?;
        index.insert(name, i);
    }
    let unit = column("unit");
    let mut rows = Vec::new();
    for record in reader.records() {
        let row = match record {
            Ok(r) if r.len() == header.len() => {
                let field = |i: usize| r.get(i).filter(|s| !s.is_empty()).map(str::to_owned);
                RawRow {
                    equipment: field(index["equipment"]),
                    sensor: field(index["sensor"]),
                    ts: field(index["ts"]),
                    value: field(index["value"]),
                    unit: unit.and_then(field),
                    malformed: None,
                    number: None,
                }
            }
            Ok(r) => RawRow {
                malformed: Some(r.iter().collect::<Vec<_>>().join(",")),
                ..RawRow::default()
            },
            Err(e) => RawRow {
                malformed: Some(format!("unreadable CSV record: {e}")),
                ..RawRow::default()
            },
        };
        rows.push(row);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn batch_ids_are_checked_and_must_agree() {
        let mut headers = HeaderMap::new();
        assert_eq!(batch_id(&headers, None, None).unwrap(), None);
        headers.insert("idempotency-key", HeaderValue::from_static("b-1"));
        assert_eq!(
            batch_id(&headers, Some("x=1&batch_id=b-1"), Some("b-1".into())).unwrap(),
            Some("b-1".into())
        );
        assert!(batch_id(&headers, Some("batch_id=b-2"), None).is_err());
        assert!(batch_id(&HeaderMap::new(), Some("batch_id=a%20b"), None).is_err());
        assert!(batch_id(&HeaderMap::new(), None, Some("x".repeat(129))).is_err());
    }

    #[test]
    fn csv_rows_keep_their_fields_and_short_rows_are_malformed() {
        let rows =
            parse_csv(b"ts,equipment,sensor,value,unit\n1000,rig-1,PS1,1.5,bar\n1,2\n").unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].equipment.as_deref(), Some("rig-1"));
        assert_eq!(rows[0].ts.as_deref(), Some("1000"));
        assert_eq!(rows[0].unit.as_deref(), Some("bar"));
        assert!(rows[1].malformed.is_some());
        assert!(parse_csv(b"equipment,sensor,value\nrig-1,PS1,1\n").is_err());
    }
}
