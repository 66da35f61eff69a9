//! A function's cold start reads the configuration from one Secrets Manager
//! secret, on the AWS API emulator: the secret's text is the TOML file, and
//! each way it can be wrong stops the start with a sentence naming the
//! secret and what to fix, never a value from it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use pointsflow_lambda::{ColdStartError, load_config};

const DEMO: &str = include_str!("../../../infra/local/pointsflow.toml");

#[tokio::test]
async fn the_configuration_is_the_secrets_text_and_every_fault_is_named() {
    let sdk = pointsflow_harness::emulator::config().await;
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
    let prefix = format!("config-secret-{}", std::process::id());
    let put = |name: &str| secrets.create_secret().name(format!("{prefix}/{name}"));

    put("good").secret_string(DEMO).send().await.unwrap();
    let config = load_config(&secrets, &format!("{prefix}/good"))
        .await
        .unwrap();
    assert_eq!(config.sources.len(), 3);

    let missing = load_config(&secrets, &format!("{prefix}/missing"))
        .await
        .unwrap_err();
    assert!(
        matches!(missing, ColdStartError::Secret { .. }),
        "{missing}"
    );
    let said = missing.to_string();
    assert!(
        said.starts_with(&format!(
            "secret {prefix}/missing (from POINTSFLOW_CONFIG_SECRET): "
        )) && said.contains("ResourceNotFound"),
        "{said}"
    );

    let typo = DEMO.replace(
        "api_key = \"pf_demo_4f1c2b7e9a6d4e0f\"",
        "api_keys = \"pf_demo_4f1c2b7e9a6d4e0f\"",
    );
    put("typo").secret_string(typo).send().await.unwrap();
    let said = load_config(&secrets, &format!("{prefix}/typo"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        said.starts_with(&format!(
            "configuration in secret {prefix}/typo: TOML parse error at line "
        )) && !said.contains("pf_demo_4f1c"),
        "{said}"
    );

    put("binary")
        .secret_binary(aws_sdk_secretsmanager::primitives::Blob::new(
            DEMO.as_bytes(),
        ))
        .send()
        .await
        .unwrap();
    let said = load_config(&secrets, &format!("{prefix}/binary"))
        .await
        .unwrap_err()
        .to_string();
    assert!(said.ends_with("has no text value (SecretString)"), "{said}");
}
