//! Applied programs: a revision is stored only over the one before it, and
//! the latest revision of every program is read back as written.

use std::sync::Arc;

use chrono::DateTime;
use pointsflow_core::access::Principal;
use pointsflow_core::ports::{ProgramStore, StoreError, StoredProgram};
use pointsflow_core::program::Program;

fn program(id: &str, budget: u64) -> Program {
    let text = format!(
        r#"
id = "{id}"
name = "Conformance"
currency = "USD"
budget = {budget}
time_zone = "Europe/London"
daily_cap_per_recipient = 100
points = {{ rule = "tiers", tiers = [{{ from = "0.01", points = 5 }}, {{ from = "1000.50", points = 9 }}] }}
conditions = [{{ field = "amount", gte = "10.25" }}, {{ field = "attributes.Stage", in = ["Closed Won"] }}]
member_format = {{ min_length = 10, max_length = 10, characters = "digits", check_digit = "luhn" }}
transfer = {{ mode = "scheduled", cron = "0 18 * * FRI", time_zone = "Europe/London", consolidate = true }}
destination = {{ partner = "air", partner_program = "SKY" }}
"#
    );
    toml::from_str(&text).unwrap()
}

fn stored(id: &str, budget: u64, revision: u64) -> StoredProgram {
    StoredProgram {
        program: program(id, budget),
        revision,
        applied_by: Principal::parse("ops-anna").unwrap(),
        confirmed_by: Some(Principal::parse("ops-bo").unwrap()),
        applied_at: DateTime::UNIX_EPOCH,
    }
}

pub async fn run_all(store: &Arc<dyn ProgramStore>) {
    assert!(store.programs().await.unwrap().is_empty());
    store.put_program(&stored("a", 100, 1)).await.unwrap();
    assert_eq!(
        store.put_program(&stored("a", 200, 1)).await,
        Err(StoreError::Conflict { expected: 1 }),
        "a second revision 1 is a conflict"
    );
    assert_eq!(
        store.put_program(&stored("a", 200, 3)).await,
        Err(StoreError::Conflict { expected: 1 }),
        "a revision must follow the stored one"
    );
    store.put_program(&stored("a", 200, 2)).await.unwrap();
    store.put_program(&stored("b", 50, 1)).await.unwrap();
    let mut all = store.programs().await.unwrap();
    all.sort_by(|x, y| x.program.id.cmp(&y.program.id));
    assert_eq!(
        all,
        vec![stored("a", 200, 2), stored("b", 50, 1)],
        "every field round-trips"
    );
}
