//! Access tokens (short-lived JWTs, HS256, signed with the active key and
//! naming it in `kid` so keys can rotate) and refresh tokens (opaque random
//! strings; only their SHA-256 is stored).

use std::collections::HashMap;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::roles::Role;

/// What an access token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user's id.
    pub sub: String,
    /// The user's role.
    pub role: Role,
    /// What the role allows, by name.
    pub permissions: Vec<String>,
    /// The session it belongs to.
    pub sid: String,
    /// This token's id.
    pub jti: String,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
    /// Expires at, seconds since the epoch.
    pub exp: i64,
    /// Issuer: `hydrowatch`.
    pub iss: String,
}

impl Claims {
    /// The claims of an access token for `user_id` with `role` in session
    /// `sid`, issued at `iat` and expiring at `exp` (seconds since the
    /// epoch), with a fresh `jti`.
    pub fn new(user_id: i64, role: Role, sid: &str, iat: i64, exp: i64) -> Claims {
        Claims {
            sub: user_id.to_string(),
            role,
            permissions: role
                .permissions()
                .iter()
                .map(|p| p.as_str().to_owned())
                .collect(),
            sid: sid.to_owned(),
            jti: random_token(),
            iat,
            exp,
            iss: ISSUER.to_owned(),
        }
    }
}

/// A signing key by id.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SigningKey {
    /// Its id, put in each token's `kid`.
    pub id: String,
    /// The HMAC-SHA256 secret, at least 32 bytes.
    pub secret: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("id", &self.id)
            .field("secret", &"…")
            .finish()
    }
}

/// Why a token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token has expired")]
    Expired,
    /// Not a token of ours: bad signature, unknown key, wrong algorithm,
    /// malformed.
    #[error("the token is not valid")]
    Invalid,
}

/// The keys tokens are signed and checked with.
pub struct TokenKeys {
    active: String,
    encoding: EncodingKey,
    decoding: HashMap<String, DecodingKey>,
}

/// Tokens name this issuer.
pub const ISSUER: &str = "hydrowatch";

impl TokenKeys {
    /// `keys` with `active` the one new tokens are signed with; the others
    /// still verify tokens signed before a rotation.
    pub fn new(keys: &[SigningKey], active: &str) -> Result<TokenKeys, String> {
        let mut decoding = HashMap::new();
        let mut encoding = None;
        for k in keys {
            if k.secret.len() < 32 {
                return Err(format!(
                    "auth key {:?}: the secret needs at least 32 bytes",
                    k.id
                ));
            }
            if decoding
                .insert(k.id.clone(), DecodingKey::from_secret(k.secret.as_bytes()))
                .is_some()
            {
                return Err(format!("auth key {:?} is listed twice", k.id));
            }
            if k.id == active {
                encoding = Some(EncodingKey::from_secret(k.secret.as_bytes()));
            }
        }
        let encoding =
            encoding.ok_or_else(|| format!("auth.active_key {active:?} is not among auth.keys"))?;
        Ok(TokenKeys {
            active: active.to_owned(),
            encoding,
            decoding,
        })
    }

    /// Signs `claims` with the active key.
    pub fn sign(&self, claims: &Claims) -> String {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.active.clone());
        // HS256 over serialisable claims cannot fail.
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap_or_default()
    }

    /// Checks a token: HS256 only (no `none`), a known key id, our issuer,
    /// not expired.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        if header.alg != Algorithm::HS256 {
            return Err(TokenError::Invalid);
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.decoding.get(kid))
            .ok_or(TokenError::Invalid)?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        jsonwebtoken::decode::<Claims>(token, key, &validation)
            .map(|d| d.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })
    }
}

/// A new random token (256 bits, URL-safe): refresh tokens, session ids.
pub fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    crate::hex(&bytes)
}

/// How a token is stored: its SHA-256, hex.
pub fn digest(token: &str) -> String {
    crate::hex(&Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(active: &str) -> TokenKeys {
        TokenKeys::new(
            &[
                SigningKey {
                    id: "k1".into(),
                    secret: "first-secret-first-secret-first-secret".into(),
                },
                SigningKey {
                    id: "k2".into(),
                    secret: "second-secret-second-secret-second-secret".into(),
                },
            ],
            active,
        )
        .unwrap()
    }

    fn claims(exp_in: i64) -> Claims {
        let now = chrono::Utc::now().timestamp();
        Claims {
            sub: "7".into(),
            role: Role::Engineer,
            permissions: vec!["alerts:ack".into()],
            sid: "s".into(),
            jti: "j".into(),
            iat: now,
            exp: now + exp_in,
            iss: ISSUER.into(),
        }
    }

    #[test]
    fn tokens_verify_across_a_key_rotation_and_nothing_else_does() {
        let old = keys("k1");
        let token = old.sign(&claims(60));
        assert_eq!(old.verify(&token).unwrap().role, Role::Engineer);
        // After rotation to k2, k1's tokens still verify until they expire.
        let new = keys("k2");
        assert_eq!(new.verify(&token).unwrap().sub, "7");
        assert!(new.sign(&claims(60)).len() > 20);
        // Expired.
        assert_eq!(old.verify(&old.sign(&claims(-5))), Err(TokenError::Expired));
        // Signed by a key we do not have (same kid, other secret).
        let foreign = TokenKeys::new(
            &[SigningKey {
                id: "k1".into(),
                secret: "someone-else-someone-else-someone-else".into(),
            }],
            "k1",
        )
        .unwrap();
        assert_eq!(
            old.verify(&foreign.sign(&claims(60))),
            Err(TokenError::Invalid)
        );
        // alg: none, with the same claims.
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let none = format!(
            "{}.{}.",
            b64.encode(br#"{"alg":"none","typ":"JWT","kid":"k1"}"#),
            b64.encode(serde_json::to_vec(&claims(60)).unwrap())
        );
        assert_eq!(old.verify(&none), Err(TokenError::Invalid));
        assert_eq!(old.verify("garbage"), Err(TokenError::Invalid));
        // Short secrets and a missing active key are refused.
        assert!(TokenKeys::new(
            &[SigningKey {
                id: "k".into(),
                secret: "short".into()
            }],
            "k"
        )
        .is_err());
        assert!(TokenKeys::new(&[], "k").is_err());
    }

    #[test]
    fn refresh_tokens_are_random_and_stored_as_digests() {
        let (a, b) = (random_token(), random_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert_eq!(digest(&a).len(), 64);
        assert_ne!(digest(&a), a);
        assert_eq!(digest(&a), digest(&a));
    }
}
