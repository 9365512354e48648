//! Time-based one-time passwords (RFC 6238, as authenticator apps use
//! them): HMAC-SHA1 over 30-second steps, six digits, a 160-bit secret
//! shown in base32. A code is accepted one step early or late (clocks
//! drift), and each step works once.

use hmac::{Hmac, Mac};
use sha1::Sha1;

/// Seconds per step.
pub const STEP_SECS: i64 = 30;

/// Steps accepted either side of now.
const DRIFT_STEPS: i64 = 1;

const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// A new random secret, in base32.
pub fn new_secret() -> String {
    let bytes: [u8; 20] = rand::random();
    base32(&bytes)
}

/// RFC 4648 base32 without padding.
fn base32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            out.push(BASE32[((buffer >> (bits - 5)) & 31) as usize] as char);
            bits -= 5;
        }
    }
    if bits > 0 {
        out.push(BASE32[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

fn unbase32(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for c in text.bytes().filter(|c| *c != b'=') {
        let value = BASE32.iter().position(|x| *x == c.to_ascii_uppercase())? as u32;
        buffer = (buffer << 5) | value;
        bits += 5;
        if bits >= 8 {
            out.push((buffer >> (bits - 8)) as u8);
            bits -= 8;
        }
    }
    Some(out)
}

/// The six-digit code of `secret` (base32) at `step`.
pub fn code_at(secret: &str, step: i64) -> Option<String> {
    let key = unbase32(secret)?;
    let mut mac = Hmac::<Sha1>::new_from_slice(&key).ok()?;
    mac.update(&step.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = (digest[19] & 0x0f) as usize;
    let value = u32::from_be_bytes([
        digest[offset] & 0x7f,
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ]);
    Some(format!("{:06}", value % 1_000_000))
}

/// The step `code` belongs to, if it is the code of a step near
/// `now_secs` and later than `after` (a step already used).
pub fn verify(secret: &str, code: &str, now_secs: i64, after: Option<i64>) -> Option<i64> {
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let now = now_secs.div_euclid(STEP_SECS);
    // Every candidate is computed and compared in constant time, so that
    // the time taken tells nothing of which one matched.
    let mut found = None;
    for step in now - DRIFT_STEPS..=now + DRIFT_STEPS {
        let expected = code_at(secret, step)?;
        if crate::constant_time_eq(expected.as_bytes(), code.as_bytes())
            && after.is_none_or(|used| step > used)
        {
            found = Some(step);
        }
    }
    found
}

/// The `otpauth://` URI an authenticator app reads (usually from a QR
/// code) for `account` (the e-mail).
pub fn uri(secret: &str, account: &str) -> String {
    let escape = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'@' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    format!(
        "otpauth://totp/hydrowatch:{}?secret={secret}&issuer=hydrowatch&algorithm=SHA1&digits=6&period={STEP_SECS}",
        escape(account)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238, appendix B (SHA-1): the secret "12345678901234567890",
    /// the last six of the eight digits given there.
    #[test]
    fn codes_match_the_rfc_test_vectors() {
        let secret = base32(b"12345678901234567890");
        assert_eq!(secret, "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        for (time, code) in [
            (59, "287082"),
            (1_111_111_109, "081804"),
            (1_111_111_111, "050471"),
            (1_234_567_890, "005924"),
            (2_000_000_000, "279037"),
        ] {
            assert_eq!(
                code_at(&secret, time / STEP_SECS).unwrap(),
                code,
                "t = {time}"
            );
        }
        assert_eq!(unbase32(&secret).unwrap(), b"12345678901234567890");
    }

    #[test]
    fn a_code_works_near_its_time_and_once() {
        let secret = new_secret();
        assert_eq!(secret.len(), 32);
        let now = 1_700_000_000;
        let step = now / STEP_SECS;
        let code = code_at(&secret, step).unwrap();
        assert_eq!(verify(&secret, &code, now, None), Some(step));
        assert_eq!(
            verify(&secret, &code, now + STEP_SECS, None),
            Some(step),
            "a step late"
        );
        assert_eq!(
            verify(&secret, &code, now + 3 * STEP_SECS, None),
            None,
            "too late"
        );
        assert_eq!(verify(&secret, &code, now, Some(step)), None, "used");
        assert_eq!(verify(&secret, "12345", now, None), None);
        assert_eq!(verify(&secret, "abcdef", now, None), None);
        let uri = uri(&secret, "ana+ops@plant.example");
        assert!(
            uri.starts_with("otpauth://totp/hydrowatch:ana%2Bops@plant.example?secret="),
            "{uri}"
        );
        assert!(uri.contains("&issuer=hydrowatch"));
    }
}
