//! Log lines never carry a member number, an email address or a secret.
//!
//! Every formatted line goes through a [`Masker`] before it is written
//! ([`MaskingWriter`], a `tracing_subscriber` writer), whatever emitted it:
//! a field, a message, an error from a dependency. The masker replaces
//! - the configuration's secrets (source keys, Salesforce tokens, HMAC
//!   secrets, passwords, partner and operator keys), wherever they appear,
//!   with `[secret]`;
//! - the value of a field that names a credential (`authorization`,
//!   `token`, `password`, `secret`, `api_key`, ...), with `[secret]`;
//! - email addresses, keeping the first letter and the domain
//!   (`a***@example.com`);
//! - member numbers, keeping the last 4 (`******0001`): every member number
//!   the process has seen ([`pointsflow_core::sightings`]: each one parsed,
//!   the configuration's included), wherever it stands, and the value of a
//!   field that names one (`member=...`, `"memberId": "..."`).
//!
//! Nothing else is masked: a line's timestamp, a source record id such as
//! `retry-1733482932970`, request ids, amounts and counts read as they are.

use std::io::{self, Write};
use std::sync::Arc;

use tracing_subscriber::fmt::MakeWriter;

/// What to mask.
#[derive(Debug, Clone, Default)]
pub struct Masker {
    /// Longest first, so a secret that contains another is masked whole.
    secrets: Vec<String>,
}

/// Shorter strings are not treated as secrets (they would mask ordinary words).
const MIN_SECRET_LEN: usize = 8;

impl Masker {
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut secrets: Vec<String> = secrets
            .into_iter()
            .filter(|s| s.len() >= MIN_SECRET_LEN)
            .collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Self { secrets }
    }

    /// Also masks these member numbers (the configuration's) wherever
    /// they appear.
    pub fn with_members<S: AsRef<str>>(self, members: impl IntoIterator<Item = S>) -> Self {
        for m in members {
            pointsflow_core::sightings::remember(&m.as_ref().trim().to_ascii_uppercase());
        }
        self
    }

    /// `line` with every secret, email address and member number masked.
    pub fn mask(&self, line: &str) -> String {
        let mut out = line.to_owned();
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), "[secret]");
            }
        }
        mask_words(&out)
    }
}

/// What the value after a field name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Member,
    Credential,
}

/// Field names whose value is masked, compared without case, `_` or `-`.
fn field(word: &str) -> Option<Field> {
    let key: String = word
        .chars()
        .filter(|c| !matches!(c, '_' | '-'))
        .collect::<String>()
        .to_ascii_lowercase();
    match key.as_str() {
        "member"
        | "membernumber"
        | "memberid"
        | "membershipnumber"
        | "loyaltynumber"
        | "frequentflyernumber"
        | "ffn" => Some(Field::Member),
        "authorization"
        | "token"
        | "password"
        | "secret"
        | "apikey"
        | "apikeys"
        | "xpointsflowsignature"
        | "webhooksignature"
        | "signature"
        | "cookie" => Some(Field::Credential),
        _ => None,
    }
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '%' | '+' | '-' | '@')
}

/// After a field name: waiting for its `=` or `:`, or for its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    Separator(Field),
    Value(Field),
}

/// Masks the words of the line: email addresses, member numbers seen, and
/// the value of a field that calls for it (`name=value`, `name: value`,
/// `"name":"value"`, and the word after `Bearer` or `Basic`).
fn mask_words(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut word = String::new();
    let mut pending: Option<Pending> = None;
    let flush = |word: &mut String, out: &mut String, pending: &mut Option<Pending>| {
        if word.is_empty() {
            return;
        }
        let value = match *pending {
            Some(Pending::Value(f)) => Some(f),
            _ => None,
        };
        match value {
            Some(Field::Credential) if !is_flag(word) => out.push_str("[secret]"),
            Some(Field::Member) if word.chars().all(|c| c.is_ascii_alphanumeric()) => {
                out.push_str(&pointsflow_core::values::last_four(word));
            }
            _ => out.push_str(&mask_word(word)),
        }
        *pending = if is_scheme(word) {
            Some(Pending::Value(Field::Credential))
        } else {
            field(word).map(Pending::Separator)
        };
        word.clear();
    };
    for c in line.chars() {
        if is_word_char(c) {
            word.push(c);
            continue;
        }
        flush(&mut word, &mut out, &mut pending);
        pending = match (pending, c) {
            (Some(Pending::Separator(f)), ':' | '=') => Some(Pending::Value(f)),
            (Some(p), '"' | '\'' | ' ' | '\\') => Some(p),
            _ => None,
        };
        out.push(c);
    }
    flush(&mut word, &mut out, &mut pending);
    out
}

/// `Bearer`, `Basic`: the credential is the next word.
fn is_scheme(word: &str) -> bool {
    word.eq_ignore_ascii_case("bearer") || word.eq_ignore_ascii_case("basic")
}

/// Values a credential field may hold that are not a credential.
fn is_flag(word: &str) -> bool {
    is_scheme(word) || matches!(word, "true" | "false" | "null" | "none" | "set" | "missing")
}

fn mask_word(word: &str) -> String {
    if let Some((local, domain)) = word.split_once('@')
        && !local.is_empty()
        && domain.contains('.')
    {
        let first: String = local.chars().take(1).collect();
        return format!("{first}***@{domain}");
    }
    // A member number may sit inside a longer word (`member#sandbox-air#SKY1000001`).
    word.split(['.', '_', '-', '#', '%', '+', '@'])
        .fold(word.to_owned(), |acc, part| {
            if part.len() >= 5 && pointsflow_core::sightings::is_member_number(part) {
                acc.replace(part, &pointsflow_core::values::last_four(part))
            } else {
                acc
            }
        })
}

/// A member number as people other than operators see it: its last four
/// characters (`******0001`).
pub fn member_number(s: &str) -> String {
    pointsflow_core::values::last_four(s)
}

/// A `tracing_subscriber` writer that masks each line before writing it to
/// the inner writer.
#[derive(Clone)]
pub struct MaskingWriter<M> {
    inner: M,
    masker: Arc<Masker>,
}

impl<M> MaskingWriter<M> {
    pub fn new(inner: M, masker: Masker) -> Self {
        Self {
            inner,
            masker: Arc::new(masker),
        }
    }
}

/// One event's output, masked as a whole when dropped (a formatter may
/// write an event in several pieces).
pub struct MaskedLine<W: Write> {
    inner: W,
    masker: Arc<Masker>,
    buffer: Vec<u8>,
}

impl<W: Write> Write for MaskedLine<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&self.buffer);
        let masked = self.masker.mask(&text);
        self.buffer.clear();
        self.inner.write_all(masked.as_bytes())?;
        self.inner.flush()
    }
}

impl<W: Write> Drop for MaskedLine<W> {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

impl<'a, M> MakeWriter<'a> for MaskingWriter<M>
where
    M: MakeWriter<'a>,
{
    type Writer = MaskedLine<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        MaskedLine {
            inner: self.inner.make_writer(),
            masker: self.masker.clone(),
            buffer: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masker() -> Masker {
        Masker::new([
            "pf_demo_4f1c2b7e9a6d4e0f".to_owned(),
            "sf_demo_token_7c1e9b2a4d6f8e0c".to_owned(),
            "short".to_owned(),
        ])
        .with_members(["SKY1000002", "992001234567"])
    }

    #[test]
    fn member_numbers_emails_and_secrets_are_masked() {
        let m = masker();
        let line = r#"{"member":"SKY1000001","email":"ada.lovelace@example.com","auth":"Bearer pf_demo_4f1c2b7e9a6d4e0f","url":"/v1/sources/sf/events?token=sf_demo_token_7c1e9b2a4d6f8e0c","account":"member#sandbox-air#SKY1000002"}"#;
        let masked = m.mask(line);
        for leak in [
            "SKY1000001",
            "SKY1000002",
            "ada.lovelace@example.com",
            "pf_demo_4f1c2b7e9a6d4e0f",
            "sf_demo_token_7c1e9b2a4d6f8e0c",
        ] {
            assert!(!masked.contains(leak), "{leak} leaked: {masked}");
        }
        assert!(masked.contains("******0001"), "{masked}");
        assert!(masked.contains("a***@example.com"), "{masked}");
        assert!(masked.contains("Bearer [secret]"), "{masked}");
        assert!(masked.contains("member#sandbox-air#******0002"), "{masked}");
    }

    /// A member number the process saw (parsed, or configured) is masked
    /// wherever it stands; a field that names one is masked by name; a
    /// credential field's value is masked though it is no configured
    /// secret.
    #[test]
    fn member_numbers_are_masked_by_sighting_and_by_field() {
        let m = masker();
        pointsflow_core::values::MemberNumber::parse("ek00123456789").unwrap();
        let line = r#"credit of 992001234567 at EK00123456789; {"memberId": "UA55501234"} memberNumber=AB123456 authorization="Basic d29ya2RheTpzM2NyZXQ=" token: abc.def.ghi"#;
        let masked = m.mask(line);
        for leak in [
            "992001234567",
            "EK00123456789",
            "UA55501234",
            "AB123456",
            "d29ya2RheTpzM2NyZXQ",
            "abc.def.ghi",
        ] {
            assert!(!masked.contains(leak), "{leak} leaked: {masked}");
        }
        assert!(masked.contains("********4567"), "{masked}");
        assert!(masked.contains("Basic [secret]"), "{masked}");
    }

    /// What operators read to find a request is not masked.
    #[test]
    fn timestamps_and_record_ids_are_kept() {
        let m = masker();
        let line = "2026-12-06T04:05:48.123973Z  INFO intake: accepted source_record=retry-1733482932970 member validated with the partner; the token expired; moved to dispatching";
        assert_eq!(m.mask(line), line);
    }

    #[test]
    fn ids_times_and_amounts_are_kept() {
        let m = masker();
        let line = "request_id=pr_4f1c2b7e9a6d4e0f4f1c2b7e9a6d4e0f reference=pf0a1b2c3d4e5f60718293a4b5c6d7e8f9 at=2026-11-27T16:00:00Z points=251 window=sales-incentive@2026-11-27T18:00Z short";
        assert_eq!(
            m.mask(line),
            line,
            "nothing here is a member number, email or secret"
        );
    }

    #[test]
    fn a_writer_masks_whole_lines_written_in_pieces() {
        #[derive(Clone, Default)]
        struct Sink(Arc<std::sync::Mutex<Vec<u8>>>);
        impl Write for Sink {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let sink = Sink::default();
        let out = sink.clone();
        let writer = MaskingWriter::new(move || out.clone(), masker());
        {
            let mut line = writer.make_writer();
            line.write_all(b"member=SKY10").unwrap();
            line.write_all(b"00001 credited\n").unwrap();
        }
        let written = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert_eq!(written, "member=******0001 credited\n");
    }
}
