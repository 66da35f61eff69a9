//! Enrollment: member links read back as written and replaced whole, and the
//! requests in a waiting state (for enrollment, held) found by program,
//! state and recipient, and only while they wait.

use std::sync::Arc;

use chrono::Duration;
use pointsflow_core::enrollment::{LinkEvent, MemberLink, MemberValidation};
use pointsflow_core::ports::{
    Enrollments, LinkHistory, RequestCreate, RequestGet, RequestUpdate, WaitingRequests,
};
use pointsflow_core::reason::Reason;
use pointsflow_core::request::{Status, StatusKind};
use pointsflow_core::values::{MemberNumber, ProgramId, RecipientId};

use crate::{request, t0};
use pointsflow_core::reason::ReasonCode;

/// An adapter's enrollments and the request store beside them.
pub struct Enrollment {
    pub links: Arc<dyn Enrollments>,
    pub history: Arc<dyn LinkHistory>,
    pub create: Arc<dyn RequestCreate>,
    pub get: Arc<dyn RequestGet>,
    pub update: Arc<dyn RequestUpdate>,
    pub waiting: Arc<dyn WaitingRequests>,
}

pub async fn run_all(e: &Enrollment) {
    a_link_is_replaced_only_over_the_one_read(e).await;
    a_link_is_created_only_for_a_recipient_without_one(e).await;
    a_validation_does_not_roll_back_a_link_made_again(e).await;
    a_links_history_keeps_every_change_once(e).await;
    waiting_requests_are_found_while_they_wait(e).await;
}

fn link(recipient: &str, member: &str) -> MemberLink {
    MemberLink::new(
        ProgramId::parse("p").unwrap(),
        RecipientId::parse(recipient).unwrap(),
        MemberNumber::parse(member).unwrap(),
        "Grace".into(),
        "Hopper".into(),
    )
}

/// A create stores a link only where the recipient has none in force (no
/// link, or a removed one), and otherwise returns the one in force,
/// unchanged.
pub async fn a_link_is_created_only_for_a_recipient_without_one(e: &Enrollment) {
    let program = ProgramId::parse("p").unwrap();
    let who = RecipientId::parse("C-1").unwrap();
    let first = link("C-1", "SKY1000001");
    assert_eq!(e.links.create_link(&first).await.unwrap(), None);
    let other = link("C-1", "SKY1000005");
    assert_eq!(
        e.links.create_link(&other).await.unwrap(),
        Some(first.clone()),
        "a linked recipient keeps its link"
    );
    assert_eq!(
        e.links.member_link(&program, &who).await.unwrap(),
        Some(first.clone())
    );
    let mut removed = first.clone();
    removed.removed = Some(LinkEvent {
        program: program.clone(),
        recipient: who.clone(),
        at: t0(),
        by: "ops-anna".into(),
        from: Some(first.member.clone()),
        to: None,
        confirmed_by: Some("ops-bo".into()),
    });
    assert!(
        e.links.replace_link(&removed, &first.member).await.unwrap(),
        "a removal replaces the link in force"
    );
    let stored = e.links.member_link(&program, &who).await.unwrap().unwrap();
    assert!(!stored.is_active(), "a removal is kept on the link");
    let mut validated = first.clone();
    validated.validation = Some(MemberValidation {
        valid: true,
        reason: None,
        at: t0(),
    });
    assert!(
        !e.links.record_validation(&validated).await.unwrap(),
        "a validation read before the removal does not bring the link back"
    );
    assert!(
        !e.links.replace_link(&other, &first.member).await.unwrap(),
        "a change read before the removal does not bring the link back"
    );
    assert!(
        !e.links
            .member_link(&program, &who)
            .await
            .unwrap()
            .unwrap()
            .is_active()
    );
    assert_eq!(
        e.links.create_link(&other).await.unwrap(),
        None,
        "a removed link may be replaced by a new one"
    );
    assert_eq!(
        e.links.member_link(&program, &who).await.unwrap(),
        Some(other)
    );
}

/// A validation read before the recipient was unlinked and linked again,
/// to the same member under the same names, does not roll the new link
/// back to the old one.
pub async fn a_validation_does_not_roll_back_a_link_made_again(e: &Enrollment) {
    let program = ProgramId::parse("p").unwrap();
    let who = RecipientId::parse("V-1").unwrap();
    let mut first = link("V-1", "SKY1000001");
    first.linked_by = Some("ops-anna".into());
    first.linked_at = Some(t0());
    assert_eq!(e.links.create_link(&first).await.unwrap(), None);
    // Read for a validation, which the partner answers slowly.
    let mut validated = first.clone();
    validated.validation = Some(MemberValidation {
        valid: true,
        reason: None,
        at: t0(),
    });
    // Meanwhile: unlinked, and linked again to the same member.
    let mut removed = first.clone();
    removed.removed = Some(LinkEvent {
        program: program.clone(),
        recipient: who.clone(),
        at: t0() + Duration::seconds(1),
        by: "ops-anna".into(),
        from: Some(first.member.clone()),
        to: None,
        confirmed_by: Some("ops-bo".into()),
    });
    assert!(e.links.replace_link(&removed, &first.member).await.unwrap());
    let mut again = first.clone();
    again.linked_at = Some(t0() + Duration::seconds(2));
    assert_eq!(e.links.create_link(&again).await.unwrap(), None);
    assert!(
        !e.links.record_validation(&validated).await.unwrap(),
        "a validation of the old link is refused"
    );
    assert_eq!(
        e.links.member_link(&program, &who).await.unwrap(),
        Some(again.clone())
    );
    // The new link's own validation is stored.
    let mut valid_again = again.clone();
    valid_again.validation = validated.validation.clone();
    assert!(e.links.record_validation(&valid_again).await.unwrap());
    assert_eq!(
        e.links.member_link(&program, &who).await.unwrap(),
        Some(valid_again)
    );
}

/// Every change of a link is kept, oldest first; the same event twice is
/// kept once.
pub async fn a_links_history_keeps_every_change_once(e: &Enrollment) {
    let program = ProgramId::parse("p").unwrap();
    let who = RecipientId::parse("H-1").unwrap();
    let event = |minutes: i64, from: Option<&str>, to: Option<&str>| LinkEvent {
        program: program.clone(),
        recipient: who.clone(),
        at: t0() + Duration::minutes(minutes),
        by: "source:salesforce".into(),
        from: from.map(|m| MemberNumber::parse(m).unwrap()),
        to: to.map(|m| MemberNumber::parse(m).unwrap()),
        confirmed_by: None,
    };
    let created = event(0, None, Some("SKY1000001"));
    let changed = event(5, Some("SKY1000001"), Some("SKY1000002"));
    e.history.record(&changed).await.unwrap();
    e.history.record(&created).await.unwrap();
    e.history.record(&changed).await.unwrap();
    assert_eq!(
        e.history.history(&program, &who).await.unwrap(),
        vec![created, changed]
    );
    assert!(
        e.history
            .history(&program, &RecipientId::parse("H-2").unwrap())
            .await
            .unwrap()
            .is_empty()
    );
}

/// A link is replaced whole, and only over the link the replacement was
/// made against: two changes from the same link cannot both land.
pub async fn a_link_is_replaced_only_over_the_one_read(e: &Enrollment) {
    let program = ProgramId::parse("p").unwrap();
    let who = RecipientId::parse("E-1").unwrap();
    assert_eq!(e.links.member_link(&program, &who).await.unwrap(), None);
    let first = link("E-1", "SKY1000009");
    assert_eq!(e.links.create_link(&first).await.unwrap(), None);
    assert_eq!(
        e.links.member_link(&program, &who).await.unwrap(),
        Some(first.clone())
    );
    let mut second = link("E-1", "SKY2000002");
    second.validation = Some(MemberValidation {
        valid: false,
        reason: Some(Reason::new(
            ReasonCode::parse("name_mismatch"),
            "the names do not match",
        )),
        at: t0(),
    });
    let third = link("E-1", "SKY3000003");
    assert!(
        !e.links.replace_link(&third, &second.member).await.unwrap(),
        "a replacement over a link that is not the one read stores nothing"
    );
    assert!(e.links.replace_link(&second, &first.member).await.unwrap());
    assert_eq!(
        e.links.member_link(&program, &who).await.unwrap(),
        Some(second.clone())
    );
    assert!(
        !e.links.replace_link(&third, &first.member).await.unwrap(),
        "two changes from the same link: the second finds it moved"
    );
    assert_eq!(
        e.links.member_link(&program, &who).await.unwrap(),
        Some(second)
    );
}

pub async fn waiting_requests_are_found_while_they_wait(e: &Enrollment) {
    let program = ProgramId::parse("p").unwrap();
    let mut ids = Vec::new();
    for (i, recipient) in ["W-1", "W-2", "W-1"].iter().enumerate() {
        let mut r = request(&format!("waiting-{i}"));
        r.recipient.id = RecipientId::parse(recipient).unwrap();
        r.received_at = t0() + Duration::seconds(i as i64);
        e.create.create(&r).await.unwrap();
        r.transition(
            Status::AwaitingEnrollment {
                reason: Reason::new(ReasonCode::AwaitingEnrollment, "no member link"),
            },
            t0(),
            "waiting",
        )
        .unwrap();
        r.version = e.update.update(&r).await.unwrap();
        ids.push(r);
    }
    let w1 = RecipientId::parse("W-1").unwrap();
    let found = e
        .waiting
        .waiting(&program, StatusKind::AwaitingEnrollment, Some(&w1))
        .await
        .unwrap();
    assert_eq!(
        found,
        vec![ids[0].id.clone(), ids[2].id.clone()],
        "W-1's, oldest first"
    );
    let all = e
        .waiting
        .waiting(&program, StatusKind::AwaitingEnrollment, None)
        .await
        .unwrap();
    assert_eq!(all.len(), 3, "{all:?}");
    // Released: no longer waiting.
    let mut released = e.get.get(&ids[0].id).await.unwrap().unwrap();
    released
        .transition(Status::Reserved, t0(), "linked")
        .unwrap();
    e.update.update(&released).await.unwrap();
    let found = e
        .waiting
        .waiting(&program, StatusKind::AwaitingEnrollment, Some(&w1))
        .await
        .unwrap();
    assert_eq!(found, vec![ids[2].id.clone()]);
    // Moved to another waiting state: found under that state only.
    let mut held = e.get.get(&ids[2].id).await.unwrap().unwrap();
    held.transition(
        Status::Held {
            reason: Reason::new(ReasonCode::ProgramPaused, "paused"),
        },
        t0(),
        "paused",
    )
    .unwrap();
    e.update.update(&held).await.unwrap();
    assert!(
        e.waiting
            .waiting(&program, StatusKind::AwaitingEnrollment, Some(&w1))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        e.waiting
            .waiting(&program, StatusKind::Held, None)
            .await
            .unwrap(),
        vec![ids[2].id.clone()]
    );
    let other = ProgramId::parse("q").unwrap();
    assert!(
        e.waiting
            .waiting(&other, StatusKind::AwaitingEnrollment, None)
            .await
            .unwrap()
            .is_empty()
    );
}
