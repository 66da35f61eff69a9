//! Log lines never carry a member number, an email address or a secret.
//!
//! Every formatted line goes through a [`Masker`] before it is written
//! ([`MaskingWriter`], a `tracing_subscriber` writer), whatever emitted it:
//! a field, a message, an error from a dependency. The masker replaces
//! - the configuration's secrets (source keys, Salesforce tokens, HMAC
//!   secrets, passwords, partner and operator keys), wherever they appear,
//!   with `[secret]`;
//! - email addresses, keeping the first letter and the domain
//!   (`a***@example.com`);
//! - member numbers: words of 6 to 32 letters and digits, upper case, with
//!   at least 5 digits (`SKY1000001`), keeping the last 4 (`******0001`).
//!   Request ids (`pr_` and lower-case hex), partner references (`pf` and
//!   lower-case hex), times and amounts do not look like that and are kept.

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

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '%' | '+' | '-' | '@')
}

/// Masks the email addresses and member numbers among the line's words.
fn mask_words(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if !word.is_empty() {
            out.push_str(&mask_word(word));
            word.clear();
        }
    };
    for c in line.chars() {
        if is_word_char(c) {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

fn mask_word(word: &str) -> String {
    if let Some((local, domain)) = word.split_once('@')
        && !local.is_empty()
        && domain.contains('.')
    {
        let first: String = local.chars().take(1).collect();
        return format!("{first}***@{domain}");
    }
    // Member numbers may sit inside a longer word (`member#sandbox-air#SKY1000001`).
    word.split(['.', '_', '-', '#', '%', '+'])
        .fold(word.to_owned(), |acc, part| {
            if looks_like_member_number(part) {
                acc.replace(part, &keep_last_four(part))
            } else {
                acc
            }
        })
}

fn looks_like_member_number(s: &str) -> bool {
    let len = s.chars().count();
    (6..=32).contains(&len)
        && s.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        && s.chars().filter(char::is_ascii_digit).count() >= 5
}

/// A member number as people other than operators see it: its last four
/// characters (`******0001`).
pub fn member_number(s: &str) -> String {
    keep_last_four(s)
}

fn keep_last_four(s: &str) -> String {
    let len = s.chars().count();
    let shown: String = s.chars().skip(len.saturating_sub(4)).collect();
    format!("{}{shown}", "*".repeat(len.saturating_sub(4)))
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
            line.write_all(b"member SKY10").unwrap();
            line.write_all(b"00001 credited\n").unwrap();
        }
        let written = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert_eq!(written, "member ******0001 credited\n");
    }
}
