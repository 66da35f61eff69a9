//! The operators' ports: the audit log (a day's entries, an entry replaced
//! by its end), request search and reconciliation's request lines (every
//! filter, every page, known references, an hour alone), the report store,
//! and the resolver's sweep mark.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{Duration, Utc};
use pointsflow_core::access::{Principal, Verified};
use pointsflow_core::audit::{AuditEntry, AuditOutcome};
use pointsflow_core::enrollment::{LinkEvent, MemberLink};
use pointsflow_core::ports::{AuditLog, Enrollments, LinkHistory, RequestSearch};
use pointsflow_core::ports::{ProposalStore, StoreError};
use pointsflow_core::ports::{ReportStore, RequestLines, SweepMarks};
use pointsflow_core::ports::{RequestCreate, RequestUpdate};
use pointsflow_core::proposal::{Change, Proposal, ProposalId};
use pointsflow_core::reconcile::{ReconcileReport, Scope, hour_of};
use pointsflow_core::request::{Status, StatusKind};
use pointsflow_core::search::SearchFilter;
use pointsflow_core::unsettled::SweepMark;
use pointsflow_core::values::{MemberNumber, PartnerReference, ProgramId, RecipientId, RequestId};

pub struct Operations {
    pub links: Arc<dyn Enrollments>,
    pub history: Arc<dyn LinkHistory>,
    pub create: Arc<dyn RequestCreate>,
    pub update: Arc<dyn RequestUpdate>,
    pub search: Arc<dyn RequestSearch>,
    pub lines: Arc<dyn RequestLines>,
    pub audit: Arc<dyn AuditLog>,
    pub reports: Arc<dyn ReportStore>,
    pub proposals: Arc<dyn ProposalStore>,
    pub marks: Arc<dyn SweepMarks>,
}

pub async fn run_all(suite: &Operations) {
    audit_entries_are_listed_by_day_and_replaced_by_their_end(suite).await;
    requests_are_found_by_every_filter_and_listed_in_pages(suite).await;
    a_report_is_stored_and_replaced(suite).await;
    proposals_are_saved_over_the_version_read_and_listed_while_open(suite).await;
    an_hour_is_read_alone_and_the_sweep_mark_is_kept(suite).await;
}

/// The resolver reads the requests an hour at a time: a range of one hour
/// lists the requests whose period time is in it, and only those (one
/// received in the hour but sent in the next is listed in the next); its
/// mark is kept as written.
pub async fn an_hour_is_read_alone_and_the_sweep_mark_is_kept(suite: &Operations) {
    let hour = hour_of(crate::t0()) + Duration::days(30);
    let at = |minutes: i64| hour + Duration::minutes(minutes);
    let mut before = crate::request("hourly-before");
    before.received_at = at(-1);
    let mut within = crate::request("hourly-within");
    within.received_at = at(0);
    let mut last = crate::request("hourly-last");
    last.received_at = at(59);
    let mut moved = crate::request("hourly-moved");
    moved.received_at = at(30);
    let mut after = crate::request("hourly-after");
    after.received_at = at(60);
    for r in [&before, &within, &last, &moved, &after] {
        suite.create.create(r).await.unwrap();
    }
    // Sent in the next hour: it counts for that one now.
    moved
        .transition(Status::Reserved, at(59), "reserved")
        .unwrap();
    moved
        .transition(Status::Dispatching, at(61), "sent")
        .unwrap();
    suite.update.update(&moved).await.unwrap();
    let read = |from, to| async move {
        let scope = Scope::Period {
            from,
            to,
            program: None,
        };
        let mut ids = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = suite
                .lines
                .lines(&scope, cursor.as_deref(), 2)
                .await
                .unwrap();
            ids.extend(page.lines.into_iter().map(|l| l.id));
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        ids.sort();
        ids.dedup();
        ids
    };
    let ids = |rs: &[&pointsflow_core::request::PointsRequest]| {
        let mut ids: Vec<RequestId> = rs.iter().map(|r| r.id.clone()).collect();
        ids.sort();
        ids
    };
    assert_eq!(
        read(hour, at(60)).await,
        ids(&[&within, &last]),
        "the hour's requests, not the one sent in the next"
    );
    assert_eq!(
        read(at(60), at(120)).await,
        ids(&[&moved, &after]),
        "the next hour holds the one sent in it"
    );

    let mark = SweepMark {
        from: hour,
        to: at(120),
        cursor: Some("a cursor".into()),
    };
    suite.marks.keep_sweep_mark(&mark).await.unwrap();
    assert_eq!(suite.marks.sweep_mark().await.unwrap(), Some(mark.clone()));
    let read_up = SweepMark {
        from: mark.to,
        cursor: None,
        ..mark
    };
    suite.marks.keep_sweep_mark(&read_up).await.unwrap();
    assert_eq!(
        suite.marks.sweep_mark().await.unwrap(),
        Some(read_up),
        "a mark replaces the last"
    );
}

/// A proposal is created once, saved only over the version read, and
/// listed (oldest first) only while it is open.
pub async fn proposals_are_saved_over_the_version_read_and_listed_while_open(suite: &Operations) {
    let store = &suite.proposals;
    let anna = Principal::parse("arn:aws:sts::123456789012:assumed-role/Admin/anna").unwrap();
    let bo = Principal::parse("arn:aws:sts::123456789012:assumed-role/Admin/bo").unwrap();
    let proposal = |bits: u128, at| {
        Proposal::new(
            ProposalId::from_bits(bits),
            Change::Reversal {
                request_id: RequestId::parse("pr_00000000000000000000000000000001").unwrap(),
                reversal_id: format!("r{bits}"),
                points: None,
                reason: "deal lost".into(),
            },
            "deal lost",
            &anna,
            at,
        )
    };
    let base = Utc::now();
    let older = proposal(0xa1, base);
    let newer = proposal(0xa2, base + Duration::seconds(1));
    store.create(&newer).await.unwrap();
    store.create(&older).await.unwrap();
    assert!(
        matches!(store.create(&older).await, Err(StoreError::Conflict { .. })),
        "an id is created once"
    );
    // Other tests may share the store: only these two proposals count.
    let ours = async || -> Vec<ProposalId> {
        let open = store.open(100).await.unwrap().into_iter().map(|p| p.id);
        open.filter(|id| *id == older.id || *id == newer.id)
            .collect()
    };
    let open = ours().await;
    assert_eq!(
        open,
        vec![older.id.clone(), newer.id.clone()],
        "oldest first"
    );

    let mut read = store.proposal(&older.id).await.unwrap().unwrap();
    assert_eq!(read.change, older.change);
    assert_eq!(read.proposed_by, anna);
    let stale = read.clone();
    read.confirmed(&bo, base);
    read.version = store.save(&read).await.unwrap();
    assert!(
        matches!(store.save(&stale).await, Err(StoreError::Conflict { .. })),
        "a save over an older version fails"
    );
    let stored = store.proposal(&older.id).await.unwrap().unwrap();
    assert!(!stored.is_open());
    assert_eq!(stored.version, read.version);
    let open = ours().await;
    assert_eq!(
        open,
        vec![newer.id.clone()],
        "a confirmed proposal is not open"
    );
    assert!(
        store
            .proposal(&ProposalId::from_bits(0xdead))
            .await
            .unwrap()
            .is_none()
    );
}

async fn audit_entries_are_listed_by_day_and_replaced_by_their_end(suite: &Operations) {
    let day = Utc::now();
    let entry = |id: &str, at| AuditEntry {
        id: id.to_owned(),
        operator: Principal::parse("ana").unwrap(),
        verified: Verified::Iam,
        command: "get".into(),
        arguments: serde_json::json!({"request_id": "pr_x"}),
        request: None,
        started_at: at,
        outcome: None,
    };
    let first = entry("a1", day);
    let mut second = entry("a2", day + Duration::milliseconds(5));
    let other_day = entry("a0", day - Duration::days(2));
    for e in [&other_day, &second, &first] {
        suite.audit.record(e).await.unwrap();
    }
    second.outcome = Some(AuditOutcome {
        ok: true,
        code: "ok".into(),
        summary: "done".into(),
        finished_at: day,
    });
    suite.audit.record(&second).await.unwrap();
    let listed = suite.audit.entries(day.date_naive()).await.unwrap();
    let ids: Vec<&str> = listed.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(
        ids,
        ["a1", "a2"],
        "a day's entries, oldest first, each once"
    );
    assert_eq!(listed[1], second, "an entry is replaced by its end");
}

async fn requests_are_found_by_every_filter_and_listed_in_pages(suite: &Operations) {
    let program = ProgramId::parse("p").unwrap();
    let mut ids = Vec::new();
    for i in 0..12 {
        let mut r = crate::request(&format!("ops-{i}"));
        r.recipient.id = RecipientId::parse(&format!("R{}", i % 3)).unwrap();
        suite.create.create(&r).await.unwrap();
        if i % 4 == 0 {
            r.member = Some(MemberNumber::parse(&format!("SKY{i:04}")).unwrap());
            r.partner_reference = Some(PartnerReference::parse(&format!("pfops{i:04}")).unwrap());
            r.transition(Status::Reserved, crate::t0(), "reserved")
                .unwrap();
            r.transition(Status::Dispatching, crate::t0(), "sent")
                .unwrap();
            r.transition(Status::Credited, crate::t0(), "credited")
                .unwrap();
            suite.update.update(&r).await.unwrap();
        }
        ids.push(r.id.clone());
    }
    // Members reach requests through links, as in the pipeline: R0 and R1
    // are linked to their members; R2 was linked to SKY0008, then changed
    // to SKY0099, so its old requests carry SKY0008.
    let link = |recipient: &str, member: &str| {
        MemberLink::new(
            program.clone(),
            RecipientId::parse(recipient).unwrap(),
            MemberNumber::parse(member).unwrap(),
            "Ana".into(),
            "Lima".into(),
        )
    };
    for (recipient, member) in [("R0", "SKY0000"), ("R1", "SKY0004"), ("R2", "SKY0008")] {
        suite
            .links
            .create_link(&link(recipient, member))
            .await
            .unwrap();
    }
    let old = MemberNumber::parse("SKY0008").unwrap();
    assert!(
        suite
            .links
            .replace_link(&link("R2", "SKY0099"), &old)
            .await
            .unwrap()
    );
    suite
        .history
        .record(&LinkEvent {
            program: program.clone(),
            recipient: RecipientId::parse("R2").unwrap(),
            at: crate::t0(),
            by: "conformance".into(),
            from: Some(old),
            to: Some(MemberNumber::parse("SKY0099").unwrap()),
            confirmed_by: None,
        })
        .await
        .unwrap();
    // Received two days later: in the same program, not in the period.
    let mut outside = crate::request("later-ops");
    outside.received_at = crate::t0() + Duration::days(2);
    suite.create.create(&outside).await.unwrap();
    let found = |filter: SearchFilter| async move {
        let mut got: Vec<String> = suite
            .search
            .search(&filter, 100)
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.idempotency_key.as_str().starts_with("ops-"))
            .map(|r| r.idempotency_key.to_string())
            .collect();
        got.sort();
        got
    };
    assert_eq!(
        found(SearchFilter {
            source_record: Some("ops-5".into()),
            ..Default::default()
        })
        .await,
        ["ops-5"]
    );
    assert_eq!(
        found(SearchFilter {
            recipient: Some(RecipientId::parse("R1").unwrap()),
            ..Default::default()
        })
        .await,
        ["ops-1", "ops-10", "ops-4", "ops-7"]
    );
    assert_eq!(
        found(SearchFilter {
            member: Some(MemberNumber::parse("SKY0008").unwrap()),
            ..Default::default()
        })
        .await,
        ["ops-8"]
    );
    assert_eq!(
        found(SearchFilter {
            member: Some(MemberNumber::parse("SKY0004").unwrap()),
            status: Some(StatusKind::Credited),
            ..Default::default()
        })
        .await,
        ["ops-4"]
    );
    // State and program alone are read over a period.
    let day = Some(crate::t0() - Duration::hours(1));
    let next_day = Some(crate::t0() + Duration::hours(23));
    assert_eq!(
        found(SearchFilter {
            status: Some(StatusKind::Credited),
            program: Some(program.clone()),
            from: day,
            to: next_day,
            ..Default::default()
        })
        .await,
        ["ops-0", "ops-4", "ops-8"]
    );
    assert!(
        found(SearchFilter {
            status: Some(StatusKind::Credited),
            from: Some(crate::t0() + Duration::days(1)),
            to: Some(crate::t0() + Duration::days(3)),
            ..Default::default()
        })
        .await
        .is_empty(),
        "a period with none of them"
    );
    let limited = suite
        .search
        .search(
            &SearchFilter {
                program: Some(program.clone()),
                from: day,
                to: next_day,
                ..Default::default()
            },
            2,
        )
        .await
        .unwrap();
    assert_eq!(limited.len(), 2, "a search stops at its limit");

    // Every line of a period, over however many pages.
    let scope = Scope::Period {
        from: crate::t0(),
        to: crate::t0() + Duration::seconds(1),
        program: Some(program),
    };
    let mut seen = HashSet::new();
    let mut after: Option<String> = None;
    loop {
        let page = suite
            .lines
            .lines(&scope, after.as_deref(), 5)
            .await
            .unwrap();
        for line in page.lines {
            assert!(seen.insert(line.id.clone()), "a line listed twice");
        }
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    for id in &ids {
        assert!(seen.contains(id), "{id} missing from the lines");
    }
    assert!(
        !seen.contains(&outside.id),
        "a request of a later day is not in the period"
    );
    let asked: HashSet<PartnerReference> = ["pfops0004", "pfnobody0001"]
        .iter()
        .map(|r| PartnerReference::parse(r).unwrap())
        .collect();
    let hour = Duration::hours(1);
    let known = suite
        .lines
        .known_references(&asked, crate::t0() - hour, crate::t0() + hour)
        .await
        .unwrap();
    assert_eq!(
        known,
        HashSet::from([PartnerReference::parse("pfops0004").unwrap()])
    );
    let later = crate::t0() + Duration::days(3);
    assert!(
        suite
            .lines
            .known_references(&asked, later, later + hour)
            .await
            .unwrap()
            .is_empty(),
        "a request sent outside the statement's period is not looked at"
    );
}

async fn a_report_is_stored_and_replaced(suite: &Operations) {
    let scope = Scope::Period {
        from: crate::t0(),
        to: crate::t0() + Duration::days(1),
        program: None,
    };
    let mut report = ReconcileReport {
        id: scope.id(),
        scope: scope.clone(),
        generated_at: crate::t0(),
        requests: Default::default(),
        ledger: Default::default(),
        partner: Default::default(),
        unsettled: 0,
        mismatch_count: 0,
        mismatches: Vec::new(),
        statement_from: crate::t0(),
        statement_to: crate::t0(),
    };
    assert_eq!(suite.reports.report(&report.id).await.unwrap(), None);
    suite.reports.put_report(&report).await.unwrap();
    report.mismatch_count = 3;
    suite.reports.put_report(&report).await.unwrap();
    assert_eq!(
        suite.reports.report(&report.id).await.unwrap(),
        Some(report)
    );
}
