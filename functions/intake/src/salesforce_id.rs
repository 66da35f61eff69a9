//! Salesforce record ids: 15 characters, case-sensitive, or 18 with a
//! 3-character suffix that encodes the case of the first 15, so the 18 form
//! survives case-insensitive systems. Both forms of one record compare equal
//! once brought to 18.

const SUFFIX: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";

/// The 18-character form of a 15- or 18-character id; `None` for anything else.
pub fn to_18(id: &str) -> Option<String> {
    let id = id.trim();
    if !(id.len() == 15 || id.len() == 18) || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    let base = &id.as_bytes()[..15];
    let mut out = String::with_capacity(18);
    out.push_str(&id[..15]);
    for chunk in base.chunks(5) {
        let mut bits = 0usize;
        for (i, b) in chunk.iter().enumerate() {
            if b.is_ascii_uppercase() {
                bits |= 1 << i;
            }
        }
        out.push(char::from(SUFFIX[bits]));
    }
    // An 18-character id whose suffix does not match its case was altered
    // (e.g. lower-cased): the suffix restores it.
    if id.len() == 18 && !id[15..].eq_ignore_ascii_case(&out[15..]) {
        return restore_case(id);
    }
    Some(out)
}

/// Rebuilds the case of the first 15 characters from an 18-character id's suffix.
fn restore_case(id: &str) -> Option<String> {
    let suffix = id[15..].to_ascii_uppercase();
    let mut out = String::with_capacity(18);
    for (chunk, s) in id.as_bytes()[..15].chunks(5).zip(suffix.bytes()) {
        let bits = SUFFIX.iter().position(|&c| c == s)?;
        for (i, b) in chunk.iter().enumerate() {
            out.push(if bits & (1 << i) != 0 {
                char::from(b.to_ascii_uppercase())
            } else {
                char::from(b.to_ascii_lowercase())
            });
        }
    }
    out.push_str(&suffix);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_agree() {
        // 001A0000006Vm9r -> 001A0000006Vm9rIAC (a documented example pair).
        assert_eq!(
            to_18("001A0000006Vm9r").as_deref(),
            Some("001A0000006Vm9rIAC")
        );
        assert_eq!(
            to_18("001A0000006Vm9rIAC").as_deref(),
            Some("001A0000006Vm9rIAC")
        );
        // The 18 form survives a lower-casing system.
        assert_eq!(
            to_18("001a0000006vm9riac").as_deref(),
            Some("001A0000006Vm9rIAC")
        );
        assert_eq!(to_18("00D5g000004XYZA").map(|s| s.len()), Some(18));
        assert_eq!(to_18("short"), None);
        assert_eq!(to_18("001A0000006Vm9r!"), None);
    }
}
