//! A deployed stack reads its configuration from one Secrets Manager secret
//! (README, "Deploy to AWS"). A large customer's configuration, 20 sources
//! of every kind and 5 partners, with credentials of realistic length and
//! two of each during a rotation, must fit it with room to spare.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fmt::Write;

use pointsflow_config::{Config, DEPLOYED_MAX_BYTES};

/// A credential-shaped string of `len` characters, distinct per `seed`.
fn secret(prefix: &str, seed: usize, len: usize) -> String {
    let mut s = String::from(prefix);
    let mut x = seed as u64 ^ 0x9e37_79b9_7f4a_7c15;
    while s.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        write!(s, "{:x}", x & 0xf).unwrap();
    }
    s
}

/// Two credentials, as during a rotation: a TOML array of two strings.
fn two(prefix: &str, seed: usize, len: usize) -> String {
    format!(
        "[\"{}\", \"{}\"]",
        secret(prefix, seed, len),
        secret(prefix, seed + 100, len)
    )
}

const SOURCES: usize = 20;
const PARTNERS: usize = 5;
const PROGRAMS: usize = 10;
const OPERATORS: usize = 12;

/// The configuration of a large customer: for every program two sources
/// (one CRM or API, one HRIS or API), each with the longest settings it
/// has: mappings with attributes, routes, conditions, callbacks, two
/// credentials each; partners on the REST contract with keys and limits.
fn large_configuration() -> String {
    let mut t = String::new();
    t.push_str(
        "[queues]\nvisibility_timeout_ms = 180000\nmax_receive_count = 5\nbatch_size = 10\nconcurrency = 50\nfunction_timeout_ms = 60000\n\n",
    );
    for i in 0..SOURCES {
        let program = format!("program-{:02}", i % PROGRAMS);
        let other = format!("program-{:02}", (i + 1) % PROGRAMS);
        writeln!(t, "[[sources]]\nid = \"source-{i:02}\"").unwrap();
        match i % 3 {
            0 => {
                writeln!(
                    t,
                    "kind = \"salesforce_outbound_message\"\nprogram = \"{program}\""
                )
                .unwrap();
                writeln!(
                    t,
                    "salesforce = {{ tokens = {}, org_ids = [\"00D5g0000{i:02}DemoEAC\"] }}",
                    two("sf_", i, 35)
                )
                .unwrap();
                t.push_str("mapping = { recipient = \"OwnerId\", amount = \"Amount\", currency_field = \"CurrencyIsoCode\", currency = \"USD\", event_type = \"opportunity.closed_won\", occurred_at = \"CloseDate\", attributes = [\"Name\", \"AccountId\", \"Type\", \"LeadSource\"] }\n");
                t.push_str("qualify = [{ field = \"StageName\", equals = \"Closed Won\" }, { field = \"Type\", in = [\"New Business\", \"Renewal\", \"Upsell\"] }]\n");
                writeln!(
                    t,
                    "routes = [{{ field = \"Type\", equals = \"Renewal\", program = \"{other}\" }}]"
                )
                .unwrap();
            }
            1 => {
                writeln!(t, "kind = \"webhook\"\nprogram = \"{program}\"").unwrap();
                writeln!(
                    t,
                    "webhook = {{ auth = \"hmac\", secrets = {} }}",
                    two("whsec_", i, 46)
                )
                .unwrap();
                t.push_str("mapping = { recipient = \"/employee/id\", points = \"/award/points\", event_id = \"/id\", event_type = \"recognition.awarded\", occurred_at = \"/awarded_at\", attributes = [\"/award/reason\", \"/award/category\", \"/employee/department\"] }\n");
            }
            _ => {
                writeln!(t, "api_keys = {}", two("pf_live_", i, 40)).unwrap();
            }
        }
        writeln!(
            t,
            "callback = {{ url = \"https://integrations.example-customer.com/pointsflow/source-{i:02}/status\", secret = \"{}\" }}\n",
            secret("cb_", i, 40)
        )
        .unwrap();
    }
    for p in 0..PARTNERS {
        writeln!(
            t,
            "[[partners]]\nid = \"partner-{p}\"\nkind = \"rest\"\nbase_url = \"https://api.loyalty-partner-{p}.example.com/v2\"\napi_key = \"{}\"\ntimeout_ms = 10000\nrate_limit_per_second = 50\ncircuit_failures = 5\ncircuit_open_ms = 30000\ncommit_within_ms = 600000\n",
            secret("lp_", p, 64)
        )
        .unwrap();
    }
    for g in 0..PROGRAMS {
        let sources: Vec<String> = (0..SOURCES)
            .filter(|i| i % PROGRAMS == g || (i + 1) % PROGRAMS == g)
            .map(|i| format!("\"source-{i:02}\""))
            .collect();
        writeln!(
            t,
            "[[programs]]\nid = \"program-{g:02}\"\nname = \"Program {g}: miles for closed deals and recognition across the region\"\ncurrency = \"USD\"\nsources = [{}]\nevent_types = [\"opportunity.closed_won\", \"recognition.awarded\"]\nbudget = 100000000\nmonthly_cap_per_recipient = 50000\napproval_threshold = 25000\nsecond_approval_threshold = 40000\nreversal_limit = 5000\npoints = {{ rule = \"rate\", points = 2, per = \"100\" }}\ntransfer = {{ mode = \"realtime\" }}\ndestination = {{ partner = \"partner-{}\", partner_program = \"SKY\" }}\n",
            sources.join(", "),
            g % PARTNERS
        )
        .unwrap();
    }
    for o in 0..OPERATORS {
        writeln!(
            t,
            "[[operators]]\nid = \"operator-{o:02}\"\nprincipals = [\"arn:aws:sts::123456789012:assumed-role/PointsflowAdmin/operator-{o:02}@example-customer.com\", \"arn:aws:sts::123456789012:assumed-role/PointsflowOperator/operator-{o:02}@example-customer.com\"]\nroles = [\"viewer\", \"approver\", \"operator\", \"admin\"]\n"
        )
        .unwrap();
    }
    t
}

#[test]
fn twenty_sources_and_five_partners_fit_the_deployed_store_with_room_to_spare() {
    let text = large_configuration();
    let config = Config::parse(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.sources.len(), SOURCES);
    assert_eq!(config.partners.len(), PARTNERS);
    assert_eq!(config.programs.len(), PROGRAMS);
    println!(
        "{SOURCES} sources, {PARTNERS} partners, {PROGRAMS} programs, {OPERATORS} operators: {} of {DEPLOYED_MAX_BYTES} bytes",
        text.len()
    );
    // Half the store at most: room for more sources, members and comments.
    assert!(
        text.len() <= DEPLOYED_MAX_BYTES / 2,
        "{} bytes: over half of the {DEPLOYED_MAX_BYTES} a secret holds",
        text.len()
    );
}

#[test]
fn the_demo_configuration_fits_too() {
    let demo = include_str!("../../../infra/local/pointsflow.toml");
    Config::parse(demo).unwrap();
    assert!(demo.len() <= DEPLOYED_MAX_BYTES);
}
