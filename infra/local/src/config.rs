//! The local stack's configuration: the shared format, and the demo
//! configuration `pointsflow dev` starts with when given none.

pub use pointsflow_config::*;

/// The configuration file format, as the local stack names it.
pub type LocalConfig = Config;

/// The configuration `pointsflow dev` starts with when given none.
pub const DEFAULT_CONFIG: &str = include_str!("../pointsflow.toml");

/// The demo programs as a program file (`pointsflow programs apply`).
pub const EXAMPLE_PROGRAMS: &str = include_str!("../programs.toml");

/// The demo configuration, parsed.
pub fn default_config() -> Result<Config, ConfigError> {
    Config::parse(DEFAULT_CONFIG)
}

/// `pointsflow config check`: whether `text` is a configuration a deployed
/// stack can read (valid, and within the secret's
/// [`DEPLOYED_MAX_BYTES`]), as one line saying what it holds. An error
/// names the entry and field, or the size, and never quotes a value.
pub fn check_deployable(text: &str) -> Result<String, String> {
    let config = Config::parse(text).map_err(|e| e.to_string())?;
    let size = text.len();
    if size > DEPLOYED_MAX_BYTES {
        return Err(format!(
            "{size} bytes: a deployed stack reads at most {DEPLOYED_MAX_BYTES} (one Secrets Manager secret); \
             move member links into the stack (`pointsflow members import`) and comments out"
        ));
    }
    Ok(format!(
        "valid (sources: {}, partners: {}, programs: {}, operators: {}, member links: {}), {size} of {DEPLOYED_MAX_BYTES} bytes",
        config.sources.len(),
        config.partners.len(),
        config.programs.len(),
        config.operators.len(),
        config.member_links().len(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_config_is_valid() {
        let c = default_config().unwrap();
        assert!(
            c.programs
                .iter()
                .any(|p| p.id.as_str() == "sales-incentive")
        );
        assert!(!c.member_links().is_empty());
    }

    #[test]
    fn check_says_what_a_deployable_configuration_holds_and_refuses_the_rest() {
        let ok = check_deployable(DEFAULT_CONFIG).unwrap();
        assert!(
            ok.starts_with(
                "valid (sources: 3, partners: 1, programs: 2, operators: 2, member links: 4), "
            ),
            "{ok}"
        );
        let mut big = DEFAULT_CONFIG.to_owned();
        while big.len() <= DEPLOYED_MAX_BYTES {
            big.push_str("# a comment that takes room, as long notes do\n");
        }
        let refused = check_deployable(&big).unwrap_err();
        assert!(
            refused.starts_with(&format!(
                "{} bytes: a deployed stack reads at most 65536",
                big.len()
            )),
            "{refused}"
        );
        let typo = DEFAULT_CONFIG.replace(
            "api_key = \"pf_demo_4f1c2b7e9a6d4e0f\"",
            "api_keys = \"pf_demo_4f1c2b7e9a6d4e0f\"",
        );
        let refused = check_deployable(&typo).unwrap_err();
        assert!(
            refused.contains("line") && !refused.contains("pf_demo_4f1c"),
            "{refused}"
        );
    }

    #[test]
    fn errors_name_the_entry_and_field() {
        let bad = DEFAULT_CONFIG.replace("partner = \"sandbox-air\"", "partner = \"nowhere\"");
        let err = Config::parse(&bad).unwrap_err().to_string();
        assert!(
            err.contains("programs.sales-incentive") && err.contains("destination.partner"),
            "{err}"
        );

        let bad = DEFAULT_CONFIG.replace(
            "member_number = \"SKY1000001\"",
            "member_number = \"SKY-1\"",
        );
        let err = Config::parse(&bad).unwrap_err().to_string();
        assert!(err.contains("member_number"), "{err}");

        let bad = DEFAULT_CONFIG.replace("per = \"100\"", "per = \"0\"");
        let err = Config::parse(&bad).unwrap_err().to_string();
        assert!(err.contains("points.per"), "{err}");
    }

    #[test]
    fn the_example_program_file_holds_the_demo_programs() {
        let file = ProgramFile::parse(EXAMPLE_PROGRAMS).unwrap();
        let config = default_config().unwrap();
        file.check(&config.known()).unwrap();
        assert_eq!(
            file.programs, config.programs,
            "applying it changes nothing"
        );
    }

    #[test]
    fn two_sources_cannot_share_a_key() {
        let twin = format!(
            "{DEFAULT_CONFIG}\n[[sources]]\nid = \"twin\"\napi_key = \"pf_demo_4f1c2b7e9a6d4e0f\"\n"
        );
        let err = Config::parse(&twin).unwrap_err().to_string();
        assert!(
            err.contains("sources.twin") && err.contains("api_key"),
            "{err}"
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        let bad = DEFAULT_CONFIG.replace("budget = 10000000", "budget = 10000000\nbudjet = 5");
        let err = Config::parse(&bad).unwrap_err().to_string();
        assert!(err.contains("budjet"), "{err}");
    }
}
