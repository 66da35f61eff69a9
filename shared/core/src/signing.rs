//! The two ways a webhook is signed, both HMAC-SHA256 over the body and a
//! timestamp, so a receiver knows who sent it and that it is fresh:
//!
//! - `pointsflow`: the hex HMAC of `{timestamp}.{body}` under the secret's
//!   bytes, in `x-pointsflow-signature: sha256=<hex>` with the Unix time in
//!   `x-pointsflow-timestamp`;
//! - Standard Webhooks 1.0 (<https://www.standardwebhooks.com>): the
//!   base64 HMAC of `{id}.{timestamp}.{body}` under the key a `whsec_`
//!   secret encodes, in `webhook-signature: v1,<base64>` (one per secret,
//!   separated by spaces, during a rotation), with `webhook-id` and
//!   `webhook-timestamp`. The id is the message's, the same on every
//!   retry, so a receiver de-duplicates on it; published libraries in
//!   most languages verify these.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The Standard Webhooks headers.
pub const WEBHOOK_ID: &str = "webhook-id";
pub const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
pub const WEBHOOK_SIGNATURE: &str = "webhook-signature";

const SECRET_PREFIX: &str = "whsec_";
/// The key a `whsec_` secret encodes: 24 to 64 bytes (192 to 512 bits),
/// as the specification recommends.
const KEY_BYTES: std::ops::RangeInclusive<usize> = 24..=64;
/// A secret's base64, padded or not (libraries write both).
const SECRET_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

fn mac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        // HMAC takes keys of any length; this cannot happen.
        return [0; 32];
    };
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// The `pointsflow` signature: HMAC-SHA256 of `{timestamp}.{body}` under
/// `secret`, as lower-case hex.
pub fn pointsflow(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    hex::encode(mac(secret, &[timestamp.as_bytes(), b".", body]))
}

/// A Standard Webhooks secret: `whsec_` and the base64 of a 24- to 64-byte
/// key. Its `Debug` shows nothing of the key.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(Vec<u8>);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(..)")
    }
}

impl WebhookSecret {
    pub fn parse(text: &str) -> Result<Self, String> {
        let encoded = text.strip_prefix(SECRET_PREFIX).ok_or_else(|| {
            format!("must start with {SECRET_PREFIX} (a Standard Webhooks secret)")
        })?;
        let key = SECRET_BASE64
            .decode(encoded)
            .map_err(|_| format!("the part after {SECRET_PREFIX} must be base64"))?;
        if !KEY_BYTES.contains(&key.len()) {
            return Err(format!(
                "must encode {} to {} bytes (it encodes {}); make one with `openssl rand -base64 32`",
                KEY_BYTES.start(),
                KEY_BYTES.end(),
                key.len()
            ));
        }
        Ok(Self(key))
    }

    /// `v1,` and the base64 HMAC-SHA256 of `{id}.{timestamp}.{body}`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let timestamp = timestamp.to_string();
        let digest = mac(
            &self.0,
            &[id.as_bytes(), b".", timestamp.as_bytes(), b".", body],
        );
        format!("v1,{}", STANDARD.encode(digest))
    }
}

/// The `webhook-signature` value for `secrets` (several during a rotation,
/// so a receiver holding either key accepts the message).
pub fn standard_signatures(
    secrets: &[WebhookSecret],
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    secrets
        .iter()
        .map(|s| s.sign(id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Why a Standard Webhooks message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the {0} header is missing")]
    Missing(&'static str),
    #[error("webhook-timestamp must be Unix seconds")]
    BadTimestamp,
    #[error("the signed timestamp is more than {0} s from now; sign again")]
    Stale(u64),
    #[error("no v1 signature in webhook-signature matches the id, timestamp and body")]
    NoMatch,
}

/// The largest `webhook-id` accepted: the specification leaves its length
/// open; ids in the wild are under 100 characters.
pub const MAX_ID_LEN: usize = 256;

/// Verifies a Standard Webhooks message signed at `timestamp` with one of
/// `secrets`, `now` being Unix seconds. The work is one HMAC per secret
/// and signature presented, with at most 8 signatures looked at.
pub fn verify_standard(
    secrets: &[WebhookSecret],
    (id, timestamp, signatures): (Option<&str>, Option<&str>, Option<&str>),
    body: &[u8],
    now: i64,
    tolerance_seconds: u64,
) -> Result<(), Refusal> {
    let id = id
        .filter(|i| !i.is_empty() && i.len() <= MAX_ID_LEN)
        .ok_or(Refusal::Missing(WEBHOOK_ID))?;
    let timestamp = timestamp.ok_or(Refusal::Missing(WEBHOOK_TIMESTAMP))?;
    let signatures = signatures.ok_or(Refusal::Missing(WEBHOOK_SIGNATURE))?;
    let at: i64 = timestamp.parse().map_err(|_| Refusal::BadTimestamp)?;
    if at.abs_diff(now) > tolerance_seconds {
        return Err(Refusal::Stale(tolerance_seconds));
    }
    let mut ok = 0u8;
    for presented in signatures
        .split(' ')
        .filter(|s| s.starts_with("v1,"))
        .take(8)
    {
        for secret in secrets {
            let expected = secret.sign(id, at, body);
            ok |= expected.as_bytes().ct_eq(presented.as_bytes()).unwrap_u8();
        }
    }
    if ok == 1 {
        Ok(())
    } else {
        Err(Refusal::NoMatch)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    // The reference libraries' example: this id, timestamp, body and secret
    // sign to this value (as the `standardwebhooks` package computes it).
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TIMESTAMP: i64 = 1_614_265_330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIGNED: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn signs_as_the_specification_does() {
        let secret = WebhookSecret::parse(SECRET).unwrap();
        assert_eq!(secret.sign(ID, TIMESTAMP, BODY), SIGNED);
    }

    #[test]
    fn verifies_any_signature_of_a_rotation_within_the_tolerance() {
        let old = WebhookSecret::parse(SECRET).unwrap();
        let new = WebhookSecret::parse(&format!("whsec_{}", STANDARD.encode([7u8; 32]))).unwrap();
        let both = standard_signatures(&[old.clone(), new.clone()], ID, TIMESTAMP, BODY);
        let (old, new) = (vec![old], vec![new]);
        let headers = |sig| (Some(ID), Some("1614265330"), Some(sig));
        for secrets in [&old, &new] {
            assert_eq!(
                verify_standard(secrets, headers(both.as_str()), BODY, TIMESTAMP + 10, 300),
                Ok(())
            );
        }
        assert_eq!(
            verify_standard(&new, headers(SIGNED), BODY, TIMESTAMP, 300),
            Err(Refusal::NoMatch)
        );
        assert_eq!(
            verify_standard(&old, headers(SIGNED), b"{\"test\": 1}", TIMESTAMP, 300),
            Err(Refusal::NoMatch)
        );
        assert_eq!(
            verify_standard(&old, headers(SIGNED), BODY, TIMESTAMP + 301, 300),
            Err(Refusal::Stale(300))
        );
        assert_eq!(
            verify_standard(
                &old,
                (Some(ID), Some("soon"), Some(SIGNED)),
                BODY,
                TIMESTAMP,
                300
            ),
            Err(Refusal::BadTimestamp)
        );
        assert_eq!(
            verify_standard(
                &old,
                (None, Some("1614265330"), Some(SIGNED)),
                BODY,
                TIMESTAMP,
                300
            ),
            Err(Refusal::Missing(WEBHOOK_ID))
        );
    }

    #[test]
    fn a_secret_is_whsec_and_a_key_of_24_to_64_bytes() {
        assert!(WebhookSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(WebhookSecret::parse("whsec_not base64!").is_err());
        assert!(WebhookSecret::parse(&format!("whsec_{}", STANDARD.encode([1u8; 16]))).is_err());
        assert!(WebhookSecret::parse(&format!("whsec_{}", STANDARD.encode([1u8; 65]))).is_err());
        assert!(WebhookSecret::parse(&format!("whsec_{}", STANDARD.encode([1u8; 64]))).is_ok());
        // Unpadded base64 is read too.
        let unpadded = STANDARD.encode([1u8; 32]);
        assert!(WebhookSecret::parse(&format!("whsec_{}", unpadded.trim_end_matches('='))).is_ok());
        assert_eq!(
            format!("{:?}", WebhookSecret::parse(SECRET).unwrap()),
            "WebhookSecret(..)"
        );
    }

    #[test]
    fn the_pointsflow_signature_is_hex_of_timestamp_and_body() {
        // `printf '1764318000.{}' | openssl dgst -sha256 -hmac secret`
        assert_eq!(
            pointsflow(b"secret", "1764318000", b"{}"),
            "d87f7d7aa4afcc4760fcbf1f7888703d4b9a741075b47d0b2625a8f299f1e2f4"
        );
    }
}
