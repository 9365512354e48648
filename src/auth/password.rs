//! Passwords: argon2id hashes in PHC strings, and the policy a new password
//! must meet (long enough, not a common password, not one of the user's
//! last five).
//!
//! The common-password list (`common-passwords.txt`, 19,626 entries,
//! lower-cased ASCII) is Django's (`django/contrib/auth/common-passwords.txt.gz`,
//! BSD-3-Clause), itself from Royce Williams' list of the most common
//! passwords in public breach corpora.

use std::collections::HashSet;
use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use serde::Deserialize;

/// The shortest password accepted.
pub const MIN_LENGTH: usize = 12;
/// How many earlier passwords a new one must differ from.
pub const HISTORY: usize = 5;

const COMMON: &str = include_str!("common-passwords.txt");

fn common() -> &'static HashSet<&'static str> {
    static SET: OnceLock<HashSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| COMMON.lines().filter(|l| !l.is_empty()).collect())
}

/// argon2id cost: memory in KiB, passes, lanes. The defaults follow OWASP's
/// recommendation (19 MiB, 2 passes, 1 lane); tests use cheap ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HashCost {
    pub memory_kib: u32,
    /// Passes over memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for HashCost {
    fn default() -> Self {
        HashCost {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
        }
    }
}

impl HashCost {
    fn hasher(&self) -> Result<Argon2<'static>, PasswordError> {
        let params = Params::new(self.memory_kib, self.iterations, self.parallelism, None)
            .map_err(|e| PasswordError::Hashing(e.to_string()))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }

    /// Checks the parameters (at start-up).
    pub fn validate(&self) -> Result<(), String> {
        self.hasher().map(|_| ()).map_err(|e| e.to_string())
    }
}

/// Why a password was refused or could not be hashed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("a password needs at least {MIN_LENGTH} characters")]
    TooShort,
    /// In the list of common passwords.
    #[error("this password is among the most common ones; choose another")]
    Common,
    /// One of the user's last passwords.
    #[error("this password was used recently; choose one not among your last {HISTORY}")]
    Reused,
    /// It is the user's e-mail address or contains it.
    #[error("a password must not contain the e-mail address")]
    ContainsEmail,
    /// argon2 failed (bad parameters).
    #[error("password hashing failed: {0}")]
    Hashing(String),
}

/// Hashes a password with argon2id and a random salt (PHC string).
pub fn hash(password: &str, cost: &HashCost) -> Result<String, PasswordError> {
    let bytes: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&bytes).map_err(|e| PasswordError::Hashing(e.to_string()))?;
    cost.hasher()?
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hashing(e.to_string()))
}

/// Whether `password` matches `phc` (the comparison inside is constant-time;
/// the parameters are those the hash was made with).
pub fn verify(password: &str, phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// A hash of nothing anybody knows, verified against when the user does not
/// exist so that a login takes as long for an unknown e-mail as for a wrong
/// password.
pub fn decoy(cost: &HashCost) -> String {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY
        .get_or_init(|| {
            let secret: [u8; 32] = rand::random();
            hash(&crate::hex(&secret), cost).unwrap_or_default()
        })
        .clone()
}

/// Checks a new password against the policy: its length, the common list,
/// the user's e-mail, and the hashes of the user's last passwords.
pub fn check(password: &str, email: &str, previous: &[String]) -> Result<(), PasswordError> {
    if password.chars().count() < MIN_LENGTH {
        return Err(PasswordError::TooShort);
    }
    let lower = password.to_lowercase();
    if common().contains(lower.as_str()) {
        return Err(PasswordError::Common);
    }
    let local = email.split('@').next().unwrap_or_default().to_lowercase();
    if !email.is_empty()
        && (lower.contains(&email.to_lowercase()) || (local.len() >= 4 && lower.contains(&local)))
    {
        return Err(PasswordError::ContainsEmail);
    }
    if previous.iter().take(HISTORY).any(|h| verify(password, h)) {
        return Err(PasswordError::Reused);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHEAP: HashCost = HashCost {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };

    #[test]
    fn hashes_are_argon2id_salted_and_verify() {
        let a = hash("correct horse battery", &CHEAP).unwrap();
        let b = hash("correct horse battery", &CHEAP).unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{a}");
        assert_ne!(a, b, "salted");
        assert!(verify("correct horse battery", &a));
        assert!(!verify("correct horse batterY", &a));
        assert!(!verify("x", "not a hash"));
        assert!(!verify("x", &decoy(&CHEAP)));
    }

    #[test]
    fn the_policy_refuses_short_common_personal_and_recent_passwords() {
        assert_eq!(
            check("short-pass1", "ana@plant.example", &[]),
            Err(PasswordError::TooShort)
        );
        // In the shipped list, whatever the case.
        assert_eq!(
            check("Q1W2E3R4T5Y6", "ana@plant.example", &[]),
            Err(PasswordError::Common)
        );
        assert_eq!(
            check("anna-ana@plant.example", "ana@plant.example", &[]),
            Err(PasswordError::ContainsEmail)
        );
        assert_eq!(
            check("my name is oliver!", "oliver@plant.example", &[]),
            Err(PasswordError::ContainsEmail)
        );
        let old: Vec<String> = ["first long password", "second long password"]
            .iter()
            .map(|p| hash(p, &CHEAP).unwrap())
            .collect();
        assert_eq!(
            check("second long password", "ana@plant.example", &old),
            Err(PasswordError::Reused)
        );
        check("a brand new long password", "ana@plant.example", &old).unwrap();
        assert!(common().len() > 19_000);
    }
}
