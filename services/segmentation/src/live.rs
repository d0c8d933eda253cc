//! Keeping membership current. After a change to a few contacts (an
//! applied feed batch, a window's edge passing, a list edited) only the
//! segments the change can affect are judged again, only for those
//! contacts, by the per-contact evaluator (`domain/evaluate.rs`), in the
//! caller's transaction; every entry and exit is recorded with its cause
//! and put on segmentation's feed in that same transaction, so it happens
//! exactly once with the change that caused it.

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::evaluate;
use crate::domain::reads::Reads;
use crate::domain::rule::Rule;
use crate::domain::segment::Cause;
use crate::domain::validate;
use crate::store::crossings::{self, Crossing};
use crate::store::{changes, facts, scoring, segment};
use changes::SegmentChanges;

/// The contacts a change touched, each with what about them changed.
#[derive(Debug, Default)]
pub struct Touched {
    contacts: HashMap<Uuid, Reads>,
    /// Judge only these segments (and those built on them), whatever else
    /// reads what changed: a time sweep's segment.
    only: Option<Uuid>,
}

impl Touched {
    /// `contacts`, to judge by `segment` (and the segments built on it).
    pub fn for_segment(segment: Uuid, contacts: &[Uuid]) -> Self {
        Touched {
            contacts: contacts
                .iter()
                .map(|contact| (*contact, Reads::default()))
                .collect(),
            only: Some(segment),
        }
    }

    pub fn touch(&mut self, contact: Uuid, what: Reads) {
        self.contacts.entry(contact).or_default().merge(&what);
    }

    /// Forgets `contact` (deleted, erased, merged away: nothing to judge).
    pub fn forget(&mut self, contact: Uuid) {
        self.contacts.remove(&contact);
    }

    pub fn is_empty(&self) -> bool {
        self.contacts.is_empty()
    }
}

/// A live dynamic segment, its rule checked.
struct CheckedRule {
    id: Uuid,
    version: i64,
    rule: Rule,
    reads: Reads,
    /// Has a lead score: decay can change the verdict.
    scored: bool,
}

/// Judges again, for the `touched` contacts, the tenant's segments their
/// changes can affect (and the segments built on those), and records the
/// entries and exits with `cause`. Returns how many there were. Callers
/// other than builds have taken their turn ([`take_turn`]) first.
pub async fn judge_again(
    tx: &mut PgConnection,
    tenant: Uuid,
    touched: &Touched,
    cause: Cause,
    now: DateTime<Utc>,
) -> anyhow::Result<usize> {
    if touched.is_empty() {
        return Ok(0);
    }
    let live = live_rules(tx).await?;
    let mut changed = Reads::default();
    for what in touched.contacts.values() {
        changed.merge(what);
    }
    let relevant = match touched.only {
        Some(segment) => with_dependents(&live, BTreeSet::from([segment])),
        None => with_dependents(&live, directly_affected(&live, &changed)),
    };
    if relevant.is_empty() {
        return Ok(0);
    }
    let mut reads = Reads::default();
    for rule in live.iter().filter(|rule| relevant.contains(&rule.id)) {
        reads.merge(&rule.reads);
    }
    let contacts: Vec<Uuid> = touched.contacts.keys().copied().collect();
    let mut facts = facts::load(tx, tenant, &contacts, &reads, now).await?;
    // Referenced segments first, so a segment built on another sees its
    // new membership.
    let mut changed_in: HashMap<Uuid, HashSet<Uuid>> = HashMap::new();
    let mut all = Vec::new();
    let mut crossings = Vec::new();
    for rule in in_reference_order(&live) {
        if !relevant.contains(&rule.id) {
            continue;
        }
        let mut segment_changes = SegmentChanges {
            segment: rule.id,
            rule_version: rule.version,
            entered: Vec::new(),
            exited: Vec::new(),
        };
        for (contact, what) in &touched.contacts {
            let cascaded = rule
                .reads
                .segments
                .iter()
                .any(|segment| changed_in.get(segment).is_some_and(|c| c.contains(contact)));
            let swept = touched.only == Some(rule.id);
            if !swept && !rule.reads.affected_by(what) && !cascaded {
                continue;
            }
            let Some(contact_facts) = facts.get_mut(contact) else {
                continue;
            };
            if rule.scored {
                crossings.push(Crossing {
                    segment: rule.id,
                    contact: *contact,
                    at: evaluate::next_crossing(&rule.rule, contact_facts, now),
                });
            }
            let member = evaluate::holds(&rule.rule, contact_facts, now);
            if member == contact_facts.segments.contains(&rule.id) {
                continue;
            }
            if member {
                contact_facts.segments.insert(rule.id);
                segment_changes.entered.push(*contact);
            } else {
                contact_facts.segments.remove(&rule.id);
                segment_changes.exited.push(*contact);
            }
        }
        let moved: HashSet<Uuid> = segment_changes
            .entered
            .iter()
            .chain(&segment_changes.exited)
            .copied()
            .collect();
        if !moved.is_empty() {
            changed_in.insert(rule.id, moved);
            all.push(segment_changes);
        }
    }
    crossings::note(tx, tenant, &crossings).await?;
    changes::apply(tx, tenant, &all, cause, now).await
}

/// Waits for the tenant's other judges (the contacts and the feedback
/// consumer, a sweep, a list edit) to commit, holding the turn until this
/// transaction ends: facts read after it include every other judge's
/// change, so two changes in the same instant are never each judged
/// without the other. Taken first in the transaction, before anything is
/// written, so no judge waits for the turn while holding rows another
/// judge needs. A build does not wait its turn: it holds its rows for
/// seconds and must not stall the feeds (its race is in
/// docs/architecture.md).
pub async fn take_turn(tx: &mut PgConnection, tenant: Uuid) -> sqlx::Result<()> {
    sqlx::query(
        "SELECT pg_advisory_xact_lock(hashtextextended('segmentation.judge ' || $1::text, 0))",
    )
    .bind(tenant)
    .execute(tx)
    .await?;
    Ok(())
}

async fn live_rules(tx: &mut PgConnection) -> anyhow::Result<Vec<CheckedRule>> {
    let mut live = Vec::new();
    let models = scoring::all(tx).await?;
    for stored in segment::live_rules(tx).await? {
        let Some(rule) = validate::stored(&stored.rule, &models) else {
            tracing::warn!(segment = %stored.id, "a stored rule no longer passes its checks");
            continue;
        };
        live.push(CheckedRule {
            id: stored.id,
            version: stored.rule_version,
            reads: Reads::of(&rule),
            scored: rule.has_lead_score(),
            rule,
        });
    }
    Ok(live)
}

/// The segments `changed` can affect.
fn directly_affected(live: &[CheckedRule], changed: &Reads) -> BTreeSet<Uuid> {
    live.iter()
        .filter(|rule| rule.reads.affected_by(changed))
        .map(|rule| rule.id)
        .collect()
}

/// `relevant`, and the segments built on them.
fn with_dependents(live: &[CheckedRule], mut relevant: BTreeSet<Uuid>) -> BTreeSet<Uuid> {
    loop {
        let before = relevant.len();
        for rule in live {
            if !rule.reads.segments.is_disjoint(&relevant) {
                relevant.insert(rule.id);
            }
        }
        if relevant.len() == before {
            return relevant;
        }
    }
}

/// `live` with every segment after the live segments it names (rules
/// cannot form cycles: they are refused when saved).
fn in_reference_order(live: &[CheckedRule]) -> Vec<&CheckedRule> {
    let ids: HashSet<Uuid> = live.iter().map(|rule| rule.id).collect();
    let mut placed: HashSet<Uuid> = HashSet::new();
    let mut order = Vec::with_capacity(live.len());
    while order.len() < live.len() {
        let before = order.len();
        for rule in live {
            let ready = rule
                .reads
                .segments
                .iter()
                .all(|id| !ids.contains(id) || placed.contains(id));
            if !placed.contains(&rule.id) && ready {
                placed.insert(rule.id);
                order.push(rule);
            }
        }
        if order.len() == before {
            // Only a cycle stored before its check could get here.
            order.extend(live.iter().filter(|rule| !placed.contains(&rule.id)));
            break;
        }
    }
    order
}
