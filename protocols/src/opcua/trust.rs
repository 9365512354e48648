//! The client's certificate store, as an operator handles it: a server
//! certificate the client has not seen is refused and kept in `rejected/`;
//! trusting it moves it to `trusted/` under the same name (the stack looks
//! it up by that name, and a copy left in `rejected/` would still be
//! refused). A session that is retrying picks it up at its next attempt.

use std::path::{Path, PathBuf};

/// A certificate in the store.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StoredCertificate {
    /// File name: `<common name> [<SHA-1 thumbprint>].der`.
    pub file: String,
    /// Full path, under `rejected/` or `trusted/`.
    pub path: PathBuf,
}

/// Why a certificate could not be trusted.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The store could not be read or changed.
    #[error("certificate store {0}: {1}")]
    Io(PathBuf, std::io::Error),
    /// No rejected certificate matches.
    #[error("no rejected certificate matches {0:?} (rejected: {1})")]
    NotFound(String, String),
    /// More than one rejected certificate matches.
    #[error("{0:?} matches more than one rejected certificate: {1}")]
    Ambiguous(String, String),
}

fn list(dir: &Path) -> Result<Vec<StoredCertificate>, TrustError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(TrustError::Io(dir.to_owned(), err)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| TrustError::Io(dir.to_owned(), e))?;
        let file = entry.file_name().to_string_lossy().into_owned();
        if file.ends_with(".der") {
            out.push(StoredCertificate {
                file,
                path: entry.path(),
            });
        }
    }
    out.sort_by(|a, b| a.file.cmp(&b.file));
    Ok(out)
}

/// Server certificates refused so far.
pub fn rejected(pki_dir: &Path) -> Result<Vec<StoredCertificate>, TrustError> {
    list(&pki_dir.join("rejected"))
}

/// Server certificates trusted.
pub fn trusted(pki_dir: &Path) -> Result<Vec<StoredCertificate>, TrustError> {
    list(&pki_dir.join("trusted"))
}

/// Trusts the one rejected certificate whose file name contains `pattern`
/// (a thumbprint, or part of the server's name); the empty pattern matches
/// when exactly one certificate is rejected.
pub fn trust(pki_dir: &Path, pattern: &str) -> Result<StoredCertificate, TrustError> {
    let rejected = rejected(pki_dir)?;
    let names = |certs: &[&StoredCertificate]| {
        certs
            .iter()
            .map(|c| c.file.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let matching: Vec<&StoredCertificate> = rejected
        .iter()
        .filter(|c| c.file.to_lowercase().contains(&pattern.to_lowercase()))
        .collect();
    let chosen = match matching.as_slice() {
        [one] => *one,
        [] => {
            return Err(TrustError::NotFound(
                pattern.to_owned(),
                names(&rejected.iter().collect::<Vec<_>>()),
            ))
        }
        many => return Err(TrustError::Ambiguous(pattern.to_owned(), names(many))),
    };
    let trusted_dir = pki_dir.join("trusted");
    std::fs::create_dir_all(&trusted_dir).map_err(|e| TrustError::Io(trusted_dir.clone(), e))?;
    let target = trusted_dir.join(&chosen.file);
    std::fs::rename(&chosen.path, &target).map_err(|e| TrustError::Io(chosen.path.clone(), e))?;
    Ok(StoredCertificate {
        file: chosen.file.clone(),
        path: target,
    })
}
