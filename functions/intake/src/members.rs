//! `/v1/programs/{program}/members/{recipient}`: enrollment. A recipient is
//! linked to a member number at the program's partner, with the names the
//! partner checks; the number is checked against the program's format
//! first. Linking releases the recipient's requests waiting for enrollment.

use pointsflow_core::enrollment::{MemberLink, MemberValidation};
use pointsflow_core::program::Program;
use pointsflow_core::values::{MemberNumber, ProgramId, RecipientId};
use serde::{Deserialize, Serialize};

use crate::problem::Problem;

/// The longest name accepted.
const MAX_NAME_CHARS: usize = 100;

/// The body of a `PUT`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkBody {
    pub member_number: String,
    pub first_name: String,
    pub last_name: String,
}

/// A link as the API shows it.
#[derive(Debug, Serialize)]
pub struct LinkView<'a> {
    pub program: &'a ProgramId,
    pub recipient: &'a RecipientId,
    pub member_number: &'a MemberNumber,
    pub first_name: &'a str,
    pub last_name: &'a str,
    /// The partner's answer, once asked (before the first reservation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validation: Option<&'a MemberValidation>,
    /// Requests that were waiting for this link and are now decided again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub released: Option<usize>,
}

impl<'a> LinkView<'a> {
    pub fn of(link: &'a MemberLink, released: Option<usize>) -> Self {
        Self {
            program: &link.program,
            recipient: &link.recipient,
            member_number: &link.member,
            first_name: &link.first_name,
            last_name: &link.last_name,
            validation: link.validation.as_ref(),
            released,
        }
    }
}

fn name(pointer: &str, raw: &str) -> Result<String, Problem> {
    let trimmed = raw.split_whitespace().collect::<Vec<_>>().join(" ");
    if trimmed.is_empty() {
        return Err(Problem::invalid_field(
            pointer,
            format!("{pointer}: must not be empty"),
        ));
    }
    if trimmed.chars().count() > MAX_NAME_CHARS {
        return Err(Problem::invalid_field(
            pointer,
            format!("{pointer}: must be at most {MAX_NAME_CHARS} characters"),
        ));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(Problem::invalid_field(
            pointer,
            format!("{pointer}: must not hold control characters"),
        ));
    }
    Ok(trimmed)
}

/// The link a `PUT` asks for, checked: the recipient id, the member number
/// in the program's format (trimmed, upper-cased), and the names.
pub fn link_from(
    program: &Program,
    recipient: &str,
    body: LinkBody,
) -> Result<MemberLink, Problem> {
    let recipient = RecipientId::parse(recipient)
        .map_err(|e| Problem::invalid_field("/recipient", format!("recipient: {}", e.problem)))?;
    let member = match &program.member_format {
        Some(format) => format.normalise(&body.member_number),
        None => MemberNumber::parse(body.member_number.trim().to_ascii_uppercase().as_str())
            .map_err(|e| e.problem),
    }
    .map_err(|problem| {
        Problem::invalid_field("/member_number", format!("/member_number: {problem}"))
    })?;
    Ok(MemberLink {
        program: program.id.clone(),
        recipient,
        member,
        first_name: name("/first_name", &body.first_name)?,
        last_name: name("/last_name", &body.last_name)?,
        validation: None,
    })
}
