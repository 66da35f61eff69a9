//! Reconcile: the requests of a window or a period, their ledger entries
//! and the partner's statement, compared credit by credit (see
//! `pointsflow_core::reconcile`). The report is stored (one per scope,
//! replaced by a rerun) and its mismatch count reported as the metric
//! `ReconciliationMismatches`, which an alarm watches.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use futures::StreamExt;
use pointsflow_core::ledger::LedgerError;
use pointsflow_core::ports::{
    Clock, LedgerRead, PartnerConnector, ProgramCatalog, ReportStore, RequestLines, StatementError,
    StoreError,
};
use pointsflow_core::reconcile::{
    LedgerView, MAX_LISTED_MISMATCHES, OurCredit, PartnerTotals, ReconcileReport, RequestLine,
    Scope, StatementLine, StatementStatus, Totals, compare,
};
use pointsflow_core::request::StatusKind;
use pointsflow_core::values::{PartnerId, PartnerReference};
use pointsflow_runtime::metrics::{self, Unit};

/// Request lines read per page.
const PAGE: usize = 5_000;
/// Ledger reads in flight at once.
const CONCURRENT_READS: usize = 32;
/// A statement is read this much wider than the credits it should hold
/// (clocks differ; a credit is created at the partner after our call).
const STATEMENT_MARGIN_MINUTES: i64 = 5;

/// The states whose credit is in flight: not compared yet. A real-time
/// request is `reserved` while a partner that recognises repeated
/// references is called (no claim is written first), so the partner may
/// have credited one still `reserved`.
fn unsettled(state: StatusKind) -> bool {
    matches!(
        state,
        StatusKind::Reserved
            | StatusKind::Dispatching
            | StatusKind::Unknown
            | StatusKind::PartnerPending
    )
}

/// What a reconciliation uses.
#[derive(Clone)]
pub struct ReconcilePorts {
    pub lines: Arc<dyn RequestLines>,
    pub ledger_read: Arc<dyn LedgerRead>,
    pub programs: Arc<dyn ProgramCatalog>,
    pub partners: HashMap<PartnerId, Arc<dyn PartnerConnector>>,
    pub reports: Arc<dyn ReportStore>,
    pub clock: Arc<dyn Clock>,
}

/// Why a reconciliation did not finish.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReconcileError {
    #[error("partner {0} is not configured")]
    PartnerNotConfigured(PartnerId),
    #[error("partner {partner}'s statement: {error}")]
    Statement {
        partner: PartnerId,
        error: StatementError,
    },
    #[error("the store: {0}; run it again")]
    Store(#[from] StoreError),
    #[error("the ledger: {0}; run it again")]
    Ledger(#[from] LedgerError),
}

impl ReconcileError {
    pub fn code(&self) -> &'static str {
        match self {
            ReconcileError::PartnerNotConfigured(_) => "partner_not_configured",
            ReconcileError::Statement {
                error: StatementError::Unsupported,
                ..
            } => "no_statement",
            ReconcileError::Statement { .. } => "partner_unavailable",
            ReconcileError::Store(_) | ReconcileError::Ledger(_) => "unavailable",
        }
    }

    pub fn is_retryable(&self) -> bool {
        match self {
            ReconcileError::PartnerNotConfigured(_) => true,
            ReconcileError::Statement { error, .. } => {
                matches!(error, StatementError::Unavailable(_))
            }
            ReconcileError::Store(e) => e.is_transient(),
            ReconcileError::Ledger(e) => e.is_transient(),
        }
    }
}

impl ReconcilePorts {
    /// Reconciles `scope`, stores the report and reports its mismatches.
    pub async fn reconcile(&self, scope: &Scope) -> Result<ReconcileReport, ReconcileError> {
        let lines = self.scope_lines(scope).await?;
        let mut requests: BTreeMap<StatusKind, Totals> = BTreeMap::new();
        let mut partners: BTreeSet<PartnerId> = BTreeSet::new();
        let (mut earliest, mut latest): (Option<DateTime<Utc>>, Option<DateTime<Utc>>) =
            (None, None);
        for line in &lines {
            let t = requests.entry(line.state).or_default();
            t.count += 1;
            t.points += line.points;
            if line.reference.is_some() {
                partners.extend(line.partner.clone());
                let at = line.dispatched_at.unwrap_or(line.last_at);
                earliest = Some(earliest.map_or(at, |e| e.min(at)));
                latest = Some(latest.map_or(line.last_at, |l| l.max(line.last_at)));
            }
        }
        // Every request that reached the partner, with its ledger entries.
        // The futures own what they read (an id), so the stream is `Send`
        // for any caller.
        let reads: Vec<(usize, pointsflow_core::values::RequestId)> = lines
            .iter()
            .enumerate()
            .filter(|(_, l)| l.reference.is_some())
            .map(|(i, l)| (i, l.id.clone()))
            .collect();
        let ledger = self.ledger_read.clone();
        let mut views = futures::stream::iter(reads.into_iter().map(move |(i, id)| {
            let ledger = ledger.clone();
            async move { (i, ledger.entries_for(&id).await) }
        }))
        .buffer_unordered(CONCURRENT_READS);
        let mut ours: HashMap<String, OurCredit> = HashMap::new();
        let mut ledger_totals = LedgerView::default();
        while let Some((i, entries)) = views.next().await {
            let line = &lines[i];
            let entries = entries?;
            let view = LedgerView::of(&entries);
            ledger_totals.posted += view.posted;
            ledger_totals.reversed += view.reversed;
            ledger_totals.pending += view.pending;
            let Some(reference) = &line.reference else {
                continue;
            };
            let credit = ours.entry(reference.to_string()).or_default();
            if credit.requests.len() < 5 {
                credit.requests.push(line.id.clone());
            }
            credit.member = credit.member.take().or_else(|| line.member.clone());
            credit.ledger.posted += view.posted;
            credit.ledger.reversed += view.reversed;
            credit.ledger.pending += view.pending;
            credit.unsettled |= unsettled(line.state);
        }
        drop(views);

        // The statement period: around the credits, and the whole period asked for.
        let margin = Duration::minutes(STATEMENT_MARGIN_MINUTES);
        let now = self.clock.now();
        let (mut from, mut to) = match scope {
            Scope::Window(w) => (w.closes_at(), w.closes_at()),
            Scope::Period { from, to, .. } => (*from, *to),
        };
        if let Some(e) = earliest {
            from = from.min(e);
        }
        if let Some(l) = latest {
            to = to.max(l);
        }
        let (from, to) = (from - margin, to + margin);
        if partners.is_empty()
            && let Some(p) = self.scope_partner(scope)
        {
            partners.insert(p);
        }
        let mut statement: HashMap<String, StatementLine> = HashMap::new();
        for partner in &partners {
            let connector = self
                .partners
                .get(partner)
                .ok_or_else(|| ReconcileError::PartnerNotConfigured(partner.clone()))?;
            let lines =
                connector
                    .statement(from, to)
                    .await
                    .map_err(|error| ReconcileError::Statement {
                        partner: partner.clone(),
                        error,
                    })?;
            statement.extend(lines.into_iter().map(|l| (l.reference.clone(), l)));
        }
        // Statement lines no request of the scope explains: ours elsewhere?
        let strangers: HashSet<PartnerReference> = statement
            .keys()
            .filter(|r| !ours.contains_key(*r))
            .filter_map(|r| PartnerReference::parse(r).ok())
            .collect();
        let known_elsewhere: HashSet<String> = self
            .lines
            // A partner may post a credit well after it was sent (a late
            // commit, an outcome resolved later): look a day further back.
            .known_references(&strangers, from - Duration::days(1), to)
            .await?
            .into_iter()
            .map(|r| r.to_string())
            .collect();
        let (mut mismatches, unsettled_credits) = compare(&ours, &statement, &known_elsewhere);
        let mut partner = PartnerTotals::default();
        for (reference, line) in &statement {
            if known_elsewhere.contains(reference) {
                continue;
            }
            match line.status {
                StatementStatus::Credited => {
                    partner.credits += 1;
                    partner.credited_points += line.points;
                    partner.reversed_points += line.reversed;
                }
                StatementStatus::Pending => partner.pending += 1,
                StatementStatus::Failed => partner.failed += 1,
            }
        }
        let mismatch_count = mismatches.len() as u64;
        mismatches.truncate(MAX_LISTED_MISMATCHES);
        let report = ReconcileReport {
            id: scope.id(),
            scope: scope.clone(),
            generated_at: now,
            requests,
            ledger: ledger_totals,
            partner,
            unsettled: unsettled_credits,
            mismatch_count,
            mismatches,
            statement_from: from,
            statement_to: to,
        };
        self.reports.put_report(&report).await?;
        metrics::put(
            (
                "Scope",
                if matches!(scope, Scope::Window(_)) {
                    "window"
                } else {
                    "period"
                },
            ),
            &[(
                "ReconciliationMismatches",
                mismatch_count as f64,
                Unit::Count,
            )],
        );
        if mismatch_count > 0 {
            tracing::error!(report = %report.id, mismatches = mismatch_count, "reconciliation found mismatches");
        }
        Ok(report)
    }

    /// Every request line of the scope.
    async fn scope_lines(&self, scope: &Scope) -> Result<Vec<RequestLine>, StoreError> {
        let mut lines = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.lines.lines(scope, after.as_deref(), PAGE).await?;
            lines.extend(page.lines);
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(lines),
            }
        }
    }

    /// The partner of the scope's program, when no request says it.
    fn scope_partner(&self, scope: &Scope) -> Option<PartnerId> {
        let program = match scope {
            Scope::Window(w) => Some(w.program().clone()),
            Scope::Period { program, .. } => program.clone(),
        }?;
        self.programs
            .program(&program)
            .map(|p| p.destination.partner.clone())
    }
}
