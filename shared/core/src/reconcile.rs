//! Reconciliation: for a window or a period, three views of the same points
//! compared credit by credit (by partner reference): the requests received
//! from the sources, the ledger, and the partner's statement. Every point a
//! settled request says was credited must be posted in the ledger and
//! credited at the partner, for the same amount; anything else is a
//! mismatch, reported with what each view says.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::request::StatusKind;
use crate::values::{MemberNumber, PartnerId, PartnerReference, ProgramId, RequestId};
use crate::window::WindowId;

/// What a reconciliation covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// The requests a scheduled window carried.
    Window(WindowId),
    /// The requests sent to the partner in `[from, to)` (received, for
    /// those never sent), of one program or all.
    Period {
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        program: Option<ProgramId>,
    },
}

impl Scope {
    /// The report's id: one stored report per scope, replaced by a rerun.
    pub fn id(&self) -> String {
        match self {
            Scope::Window(w) => format!("window:{w}"),
            Scope::Period { from, to, program } => format!(
                "period:{}..{}{}",
                from.format("%Y-%m-%dT%H:%M:%SZ"),
                to.format("%Y-%m-%dT%H:%M:%SZ"),
                program
                    .as_ref()
                    .map(|p| format!(":{p}"))
                    .unwrap_or_default()
            ),
        }
    }
}

/// When a request counts for a period: when it was sent to the partner, or
/// received, for one never sent.
pub fn period_time(request: &crate::request::PointsRequest) -> DateTime<Utc> {
    request
        .entered(StatusKind::Dispatching)
        .unwrap_or(request.received_at)
}

/// The hour `at` falls in (its start): a store keeps its requests by the
/// hour of their [`period_time`], so a period is read hour by hour, and the
/// resolver looks at each hour's requests once the hour is over.
pub fn hour_of(at: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::{DurationRound, TimeDelta};
    at.duration_trunc(TimeDelta::hours(1)).unwrap_or(at)
}

impl Scope {
    /// Whether `request` is one of the scope's.
    pub fn covers(&self, request: &crate::request::PointsRequest) -> bool {
        match self {
            Scope::Window(w) => {
                let window = w.to_string();
                match &request.status {
                    crate::request::Status::Scheduled { window: held } => *held == window,
                    _ => request
                        .credit
                        .as_ref()
                        .and_then(|c| c.as_str().split_once('/'))
                        .is_some_and(|(of, _)| of == window),
                }
            }
            Scope::Period { from, to, program } => {
                let at = period_time(request);
                at >= *from && at < *to && program.as_ref().is_none_or(|p| &request.program == p)
            }
        }
    }
}

impl RequestLine {
    pub fn of(r: &crate::request::PointsRequest) -> Self {
        RequestLine {
            id: r.id.clone(),
            state: r.state(),
            program: r.program.clone(),
            partner: r.destination.as_ref().map(|d| d.partner.clone()),
            member: r.member.clone(),
            reference: r.partner_reference.clone(),
            points: r.points.map_or(0, crate::values::Points::get),
            dispatched_at: r.entered(StatusKind::Dispatching),
            last_at: r.timeline.last().map_or(r.received_at, |e| e.at),
        }
    }
}

/// What the request store says of one request, compactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestLine {
    pub id: RequestId,
    pub state: StatusKind,
    pub program: ProgramId,
    pub partner: Option<PartnerId>,
    pub member: Option<MemberNumber>,
    pub reference: Option<PartnerReference>,
    /// The points granted (none before eligibility decided).
    pub points: u64,
    /// When the first partner call was about to be made.
    pub dispatched_at: Option<DateTime<Utc>>,
    /// The latest change of state.
    pub last_at: DateTime<Utc>,
}

/// A page of request lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinePage {
    pub lines: Vec<RequestLine>,
    /// Where the next page starts; none after the last.
    pub next: Option<String>,
}

/// A credit as the partner's statement shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatementLine {
    pub reference: String,
    pub transaction: String,
    pub member: String,
    pub points: u64,
    pub reversed: u64,
    pub status: StatementStatus,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatementStatus {
    Credited,
    Pending,
    Failed,
}

impl StatementLine {
    /// The points the member keeps from this credit.
    pub fn net(&self) -> u64 {
        match self.status {
            StatementStatus::Credited => self.points.saturating_sub(self.reversed),
            _ => 0,
        }
    }
}

/// What the ledger holds for one request: posted, less reversals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerView {
    pub posted: u64,
    pub reversed: u64,
    pub pending: u64,
}

impl LedgerView {
    /// Reads a request's entries.
    pub fn of(entries: &[crate::ledger::Entry]) -> Self {
        use crate::ledger::EntryKind;
        let mut v = LedgerView::default();
        let resolved: HashSet<&crate::ledger::EntryId> =
            entries.iter().filter_map(|e| e.pending_id()).collect();
        for e in entries {
            let n = e.amount.get();
            match &e.kind {
                EntryKind::Pending if !resolved.contains(&e.id) => v.pending += n,
                EntryKind::PostPending { .. } => v.posted += n,
                EntryKind::Posted if e.id.as_str().contains(":reverse:") => v.reversed += n,
                _ => {}
            }
        }
        v
    }

    pub fn net(&self) -> u64 {
        self.posted.saturating_sub(self.reversed)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MismatchKind {
    /// The partner credited points the ledger has not posted.
    CreditedNotPosted,
    /// The ledger posted points the partner's statement does not show.
    PostedNotOnStatement,
    /// Both have the credit, for different amounts.
    AmountDiffers,
    /// The partner credited under a reference no request carries.
    UnknownReference,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mismatch {
    pub kind: MismatchKind,
    pub reference: String,
    /// The requests the credit carried (the first few).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requests: Vec<RequestId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    /// Net points: the ledger's (posted less reversed) and the partner's
    /// (credited less reversed).
    pub ledger_points: u64,
    pub partner_points: u64,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub count: u64,
    pub points: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartnerTotals {
    pub credits: u64,
    pub credited_points: u64,
    pub reversed_points: u64,
    pub pending: u64,
    pub failed: u64,
}

/// The most mismatches a report lists (the count is always whole).
pub const MAX_LISTED_MISMATCHES: usize = 500;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileReport {
    pub id: String,
    pub scope: Scope,
    pub generated_at: DateTime<Utc>,
    /// The requests in scope by state: how many, and their points.
    pub requests: BTreeMap<StatusKind, Totals>,
    pub ledger: LedgerView,
    pub partner: PartnerTotals,
    /// Credits still in flight (reserved with a partner reference,
    /// dispatching, unknown, partner pending): not compared, the resolver
    /// settles them.
    pub unsettled: u64,
    pub mismatch_count: u64,
    pub mismatches: Vec<Mismatch>,
    /// The statement period read.
    pub statement_from: DateTime<Utc>,
    pub statement_to: DateTime<Utc>,
}

impl ReconcileReport {
    pub fn summary(&self) -> String {
        let requests: u64 = self.requests.values().map(|t| t.count).sum();
        format!(
            "{}: {requests} requests, {} points posted net, {} at the partner, {} mismatches",
            self.id,
            self.ledger.net(),
            self.partner.credited_points
                - self
                    .partner
                    .reversed_points
                    .min(self.partner.credited_points),
            self.mismatch_count
        )
    }

    /// The mismatches as CSV (a header and a row each).
    pub fn mismatches_csv(&self) -> String {
        let mut out =
            String::from("kind,reference,member,ledger_points,partner_points,requests,detail\n");
        let field = |s: &str| {
            if s.contains([',', '"', '\n']) {
                format!("\"{}\"", s.replace('"', "\"\""))
            } else {
                s.to_owned()
            }
        };
        for m in &self.mismatches {
            let kind = serde_json::to_value(m.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let requests: Vec<&str> = m.requests.iter().map(RequestId::as_str).collect();
            out.push_str(&format!(
                "{},{},{},{},{},{},{}\n",
                kind,
                field(&m.reference),
                field(m.member.as_deref().unwrap_or("")),
                m.ledger_points,
                m.partner_points,
                requests.join(" "),
                field(&m.detail)
            ));
        }
        out
    }
}

/// One credit as our side sees it: the requests under its reference.
#[derive(Debug, Default)]
pub struct OurCredit {
    pub requests: Vec<RequestId>,
    pub member: Option<MemberNumber>,
    pub ledger: LedgerView,
    /// Any of its requests still in flight.
    pub unsettled: bool,
}

/// Compares our credits with the statement's lines. `known` says which of
/// the statement's other references belong to requests outside the scope
/// (they are not this reconciliation's business).
pub fn compare(
    ours: &HashMap<String, OurCredit>,
    statement: &HashMap<String, StatementLine>,
    known_elsewhere: &HashSet<String>,
) -> (Vec<Mismatch>, u64) {
    let mut mismatches = Vec::new();
    let mut unsettled = 0;
    let first = |r: &[RequestId]| r.iter().take(5).cloned().collect::<Vec<_>>();
    for (reference, credit) in ours {
        if credit.unsettled {
            unsettled += 1;
            continue;
        }
        let ledger = credit.ledger.net();
        let line = statement.get(reference);
        let partner = line.map_or(0, StatementLine::net);
        let kind = match (ledger, partner) {
            (0, 0) => None,
            (_, 0) if line.is_none() => Some((
                MismatchKind::PostedNotOnStatement,
                "the ledger posted this credit; the statement has no line for it".to_owned(),
            )),
            (_, 0) => Some((
                MismatchKind::PostedNotOnStatement,
                "the ledger posted this credit; the statement shows it not credited".to_owned(),
            )),
            (0, _) => Some((
                MismatchKind::CreditedNotPosted,
                "the partner credited this reference; the ledger posted nothing".to_owned(),
            )),
            (l, p) if l != p => Some((
                MismatchKind::AmountDiffers,
                format!("the ledger has {l} points net, the partner {p}"),
            )),
            _ => None,
        };
        if let Some((kind, detail)) = kind {
            mismatches.push(Mismatch {
                kind,
                reference: reference.clone(),
                requests: first(&credit.requests),
                member: credit.member.as_ref().map(|m| m.to_string()),
                ledger_points: ledger,
                partner_points: partner,
                detail,
            });
        }
    }
    for (reference, line) in statement {
        if ours.contains_key(reference) || known_elsewhere.contains(reference) || line.net() == 0 {
            continue;
        }
        mismatches.push(Mismatch {
            kind: MismatchKind::UnknownReference,
            reference: reference.clone(),
            requests: Vec::new(),
            member: Some(line.member.clone()),
            ledger_points: 0,
            partner_points: line.net(),
            detail: format!(
                "the partner credited {} points (transaction {}) under a reference no request carries",
                line.net(),
                line.transaction
            ),
        });
    }
    mismatches.sort_by(|a, b| (a.kind as u8, &a.reference).cmp(&(b.kind as u8, &b.reference)));
    (mismatches, unsettled)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(reference: &str, points: u64, status: StatementStatus) -> StatementLine {
        StatementLine {
            reference: reference.into(),
            transaction: format!("T-{reference}"),
            member: "SKY1".into(),
            points,
            reversed: 0,
            status,
            created_at: DateTime::UNIX_EPOCH,
        }
    }

    fn ours(posted: u64, unsettled: bool) -> OurCredit {
        OurCredit {
            requests: vec![],
            member: None,
            ledger: LedgerView {
                posted,
                reversed: 0,
                pending: 0,
            },
            unsettled,
        }
    }

    #[test]
    fn each_kind_of_mismatch_is_found_and_a_clean_credit_is_not() {
        let mut our = HashMap::new();
        our.insert("clean".to_owned(), ours(100, false));
        our.insert("missing".to_owned(), ours(100, false));
        our.insert("notposted".to_owned(), ours(0, false));
        our.insert("differs".to_owned(), ours(100, false));
        our.insert("inflight".to_owned(), ours(0, true));
        let mut st = HashMap::new();
        for l in [
            line("clean", 100, StatementStatus::Credited),
            line("notposted", 50, StatementStatus::Credited),
            line("differs", 90, StatementStatus::Credited),
            line("inflight", 70, StatementStatus::Credited),
            line("stranger", 30, StatementStatus::Credited),
            line("elsewhere", 30, StatementStatus::Credited),
            line("failed", 30, StatementStatus::Failed),
        ] {
            st.insert(l.reference.clone(), l);
        }
        let known = HashSet::from(["elsewhere".to_owned()]);
        let (found, unsettled) = compare(&our, &st, &known);
        let kinds: Vec<(MismatchKind, &str)> = found
            .iter()
            .map(|m| (m.kind, m.reference.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [
                (MismatchKind::CreditedNotPosted, "notposted"),
                (MismatchKind::PostedNotOnStatement, "missing"),
                (MismatchKind::AmountDiffers, "differs"),
                (MismatchKind::UnknownReference, "stranger"),
            ]
        );
        assert_eq!(unsettled, 1);
    }
}
