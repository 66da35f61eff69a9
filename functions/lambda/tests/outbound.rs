//! A deployed stack (no emulator endpoint) calls partners over HTTPS only
//! and callbacks only at public hosts: a configuration that names a
//! loopback `http` partner, or a callback at a private address, stops the
//! cold start with the partner or source named. The same configuration on
//! one machine (the local stack, an emulator) is accepted.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use pointsflow_assembly::{Assembly, Reach};
use pointsflow_config::Config;
use pointsflow_lambda::AwsPlatform;

const PROGRAM: &str = r#"
[[programs]]
id = "sales-incentive"
name = "Sales incentive"
currency = "USD"
sources = ["salesforce"]
budget = 1000000
points = { rule = "rate", points = 2, per = "100" }
transfer = { mode = "realtime" }
destination = { partner = "air", partner_program = "SKY" }
"#;

fn config(partner_url: &str, callback_url: &str) -> Config {
    Config::parse(&format!(
        r#"
[[sources]]
id = "salesforce"
api_key = "pf_test_key_0123456789"
callback = {{ url = "{callback_url}", secret = "cb_test_secret_0123456789abcdef" }}

[[partners]]
id = "air"
kind = "rest"
base_url = "{partner_url}"
api_key = "partner-key"
{PROGRAM}"#
    ))
    .unwrap()
}

fn assembly(config: Config, reach: Reach) -> Assembly<AwsPlatform> {
    let sdk = aws_config::SdkConfig::builder()
        .region(aws_config::Region::new("eu-west-1"))
        .behavior_version(aws_config::BehaviorVersion::latest())
        .build();
    let mut platform = AwsPlatform::new(&sdk, "pointsflow");
    platform.reach = reach;
    platform.queues.insert(
        pointsflow_core::ports::QueueName::Callbacks,
        pointsflow_lambda::QueueUrls {
            url: Some("https://sqs.eu-west-1.amazonaws.com/1/callbacks".into()),
            dead_letter_url: None,
        },
    );
    Assembly::new(config, platform)
}

#[test]
fn a_deployed_stack_refuses_plain_http_partners_and_private_callbacks() {
    let local = config("http://127.0.0.1:9", "http://127.0.0.1:9/status");
    assert!(assembly(local.clone(), Reach::Local).partners().is_ok());
    assert!(assembly(local.clone(), Reach::Local).callbacks().is_ok());

    let partner = assembly(local.clone(), Reach::Deployed)
        .partners()
        .err()
        .unwrap();
    assert!(partner.to_string().contains("air"), "{partner}");
    assert!(partner.to_string().contains("https"), "{partner}");
    let callback = assembly(local, Reach::Deployed).callbacks().err().unwrap();
    assert!(callback.to_string().contains("salesforce"), "{callback}");

    for private in [
        "https://169.254.169.254/latest/meta-data/",
        "https://10.0.0.8/status",
        "https://[::1]/status",
        "https://localhost/status",
    ] {
        let c = config("https://partner.example.com", private);
        let refused = assembly(c, Reach::Deployed).callbacks().err();
        assert!(
            refused.is_some(),
            "{private} accepted for a deployed callback"
        );
    }
    let public = config(
        "https://partner.example.com",
        "https://hooks.example.com/status",
    );
    assert!(assembly(public.clone(), Reach::Deployed).partners().is_ok());
    assert!(assembly(public, Reach::Deployed).callbacks().is_ok());
}
