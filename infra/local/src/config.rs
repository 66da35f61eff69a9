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
