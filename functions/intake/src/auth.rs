//! Source credentials: API keys are kept only as SHA-256 digests and compared
//! in constant time, against every source, so timing reveals nothing.

use pointsflow_core::values::SourceId;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

#[derive(Clone)]
pub struct SourceCredential {
    source: SourceId,
    key_digest: [u8; 32],
}

impl std::fmt::Debug for SourceCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceCredential")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

impl SourceCredential {
    pub fn from_api_key(source: SourceId, api_key: &str) -> Self {
        Self {
            source,
            key_digest: digest(api_key),
        }
    }
}

/// The source whose key is `presented`, if any.
pub fn authenticate<'a>(
    credentials: &'a [SourceCredential],
    presented: &str,
) -> Option<&'a SourceId> {
    let presented = digest(presented);
    let mut found = None;
    for c in credentials {
        if bool::from(c.key_digest.ct_eq(&presented)) {
            found = Some(&c.source);
        }
    }
    found
}
