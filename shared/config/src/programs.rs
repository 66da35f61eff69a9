//! Program files: what `pointsflow programs apply` reads. A versioned TOML
//! file (`format = 1`) of `[[programs]]` tables in the configuration's
//! program format; every error names the program and the field.
//!
//! ```toml
//! format = 1
//!
//! [[programs]]
//! id = "sales-incentive"
//! name = "Sales incentive"
//! ...
//! ```

use std::collections::HashSet;
use std::path::Path;

use pointsflow_core::program::Program;

use crate::{ConfigError, Known, invalid};

/// The program file format this version reads.
pub const PROGRAM_FILE_FORMAT: i64 = 1;

#[derive(Debug, Clone, PartialEq)]
pub struct ProgramFile {
    pub programs: Vec<Program>,
}

impl ProgramFile {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        crate::load_with(path, Self::parse)
    }

    /// Reads the file's programs, each checked on its own (its partner and
    /// sources are checked where it is applied, against that stack's
    /// configuration: [`ProgramFile::check`]).
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let mut table: toml::Table = toml::from_str(text).map_err(|e| crate::syntax(text, &e))?;
        let file = "program file";
        match table.remove("format") {
            Some(toml::Value::Integer(PROGRAM_FILE_FORMAT)) => {}
            Some(other) => {
                return Err(invalid(
                    file,
                    "format",
                    format!("is {other}; this version reads format = {PROGRAM_FILE_FORMAT}"),
                ));
            }
            None => {
                return Err(invalid(
                    file,
                    "format",
                    format!("is missing; start the file with format = {PROGRAM_FILE_FORMAT}"),
                ));
            }
        }
        let entries = match table.remove("programs") {
            Some(toml::Value::Array(entries)) if !entries.is_empty() => entries,
            _ => {
                return Err(invalid(
                    file,
                    "programs",
                    "needs at least one [[programs]] table",
                ));
            }
        };
        if let Some(unknown) = table.keys().next() {
            return Err(invalid(
                file,
                unknown,
                "is not a program file key (format, programs)",
            ));
        }
        let mut programs = Vec::with_capacity(entries.len());
        let mut seen = HashSet::new();
        for (i, entry) in entries.into_iter().enumerate() {
            let name = entry
                .get("id")
                .and_then(toml::Value::as_str)
                .map_or_else(|| format!("programs[{i}]"), |id| format!("programs.{id}"));
            let program: Program = serde_path_to_error::deserialize(entry).map_err(|e| {
                let path = e.path().to_string();
                let field = if path == "." {
                    "program"
                } else {
                    path.as_str()
                };
                // The first line: the rest repeats the path.
                let message = e.inner().to_string();
                let first = message.lines().next().unwrap_or_default().trim().to_owned();
                invalid(name.clone(), field, first)
            })?;
            program
                .validate()
                .map_err(|e| invalid(name.clone(), e.field, e.problem))?;
            if !seen.insert(program.id.clone()) {
                return Err(invalid(name, "id", "appears twice in the file"));
            }
            programs.push(program);
        }
        Ok(Self { programs })
    }

    /// Checks every program against the partners and sources of the stack
    /// it is applied to.
    pub fn check(&self, known: &Known) -> Result<(), ConfigError> {
        self.programs.iter().try_for_each(|p| known.check(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
format = 1

[[programs]]
id = "sales"
name = "Sales"
currency = "USD"
budget = 1000
sources = ["crm"]
monthly_cap_per_recipient = 500
points = { rule = "rate", points = 2, per = "100" }
transfer = { mode = "realtime" }
destination = { partner = "air", partner_program = "SKY" }
"#;

    fn error(text: &str) -> String {
        ProgramFile::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn a_good_file_parses() {
        let file = ProgramFile::parse(GOOD).unwrap();
        assert_eq!(file.programs[0].id.as_str(), "sales");
    }

    #[test]
    fn every_kind_of_mistake_names_the_program_and_the_field() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "format = 1",
                "format = 2",
                "program file: format: is 2; this version reads format = 1",
            ),
            ("format = 1", "", "program file: format: is missing"),
            (
                "format = 1",
                "format = 1\nowner = \"finance\"",
                "program file: owner: is not a program file key",
            ),
            (
                "budget = 1000",
                "budjet = 1000",
                "programs.sales: budjet: unknown field `budjet`",
            ),
            ("budget = 1000", "budget = -5", "programs.sales: budget:"),
            (
                "budget = 1000",
                "budget = \"lots\"",
                "programs.sales: budget:",
            ),
            (
                "per = \"100\"",
                "per = \"0\"",
                "programs.sales: points.per: must be greater than 0",
            ),
            (
                "per = \"100\"",
                "per = \"ten\"",
                "programs.sales: points: invalid value: string \"ten\"",
            ),
            (
                "rule = \"rate\"",
                "rule = \"bonus\"",
                "programs.sales: points.rule: unknown variant `bonus`",
            ),
            (
                "currency = \"USD\"",
                "currency = \"dollars\"",
                "programs.sales: currency:",
            ),
            (
                "monthly_cap_per_recipient = 500",
                "monthly_cap_per_recipient = 0",
                "programs.sales: monthly_cap_per_recipient: must be greater than 0",
            ),
            (
                "monthly_cap_per_recipient = 500",
                "time_zone = \"Mars/Base\"",
                "programs.sales: time_zone: 'Mars/Base' is not an IANA time zone",
            ),
            (
                "monthly_cap_per_recipient = 500",
                "daily_cap_per_recipient = 900\nmonthly_cap_per_recipient = 500",
                "programs.sales: daily_cap_per_recipient: must not be more than monthly_cap_per_recipient",
            ),
            (
                "monthly_cap_per_recipient = 500",
                "conditions = [{ field = \"amount\", gte = \"a lot\" }]",
                "programs.sales: conditions[0].gte: 'a lot' is not a decimal number",
            ),
            (
                "monthly_cap_per_recipient = 500",
                "conditions = [{ field = \"stage\", equals = \"Won\" }]",
                "programs.sales: conditions: field must be amount",
            ),
            (
                "monthly_cap_per_recipient = 500",
                "approval_threshold = 0",
                "programs.sales: approval_threshold: must be greater than 0",
            ),
            (
                "monthly_cap_per_recipient = 500",
                "member_format = { min_length = 12, max_length = 10 }",
                "programs.sales: member_format",
            ),
            (
                "id = \"sales\"",
                "id = \"Sales Team\"",
                "programs.Sales Team: id:",
            ),
            (
                "id = \"sales\"\n",
                "",
                "programs[0]: program: missing field `id`",
            ),
            (
                "mode = \"realtime\"",
                "mode = \"whenever\"",
                "programs.sales: transfer.mode: unknown variant `whenever`",
            ),
            (
                "partner_program = \"SKY\"",
                "partner_program = \" \"",
                "programs.sales: destination.partner_program: must not be empty",
            ),
        ];
        for (from, to, expected) in cases {
            assert!(GOOD.contains(from), "{from}");
            let got = error(&GOOD.replacen(from, to, 1));
            assert!(
                got.starts_with(expected),
                "{from} -> {to}:\n  expected {expected}\n  got      {got}"
            );
        }
        let twice = format!("{GOOD}{}", &GOOD[GOOD.find("[[programs]]").unwrap()..]);
        assert_eq!(
            error(&twice),
            "programs.sales: id: appears twice in the file"
        );
        assert!(error("format = 1\nprograms = [").starts_with("TOML parse error"));
        assert_eq!(
            error("format = 1"),
            "program file: programs: needs at least one [[programs]] table"
        );
    }

    #[test]
    fn partners_and_sources_are_checked_against_the_stack() {
        let file = ProgramFile::parse(GOOD).unwrap();
        let known = Known {
            partners: vec![pointsflow_core::values::PartnerId::parse("air").unwrap()],
            sources: vec![],
        };
        assert_eq!(
            file.check(&known).unwrap_err().to_string(),
            "programs.sales: sources: no source 'crm' is configured"
        );
        let nowhere = Known::default();
        assert!(
            file.check(&nowhere)
                .unwrap_err()
                .to_string()
                .starts_with("programs.sales: destination.partner")
        );
    }
}
