//! Time passing: a contact who qualified by "an order in the last 30
//! days" leaves when that order ages out, with nothing else happening.
//! Each segment whose rule has a window relative to now is swept at most
//! `SWEEP_EVERY` after the last sweep (on the service's clock, so a test
//! moves time instead of waiting): the contacts whose dated facts crossed
//! a window's edge since are judged again (cause `time`). Any replica may
//! sweep; a sweep holds its row, so each runs once.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rapport_core::Clock;
use rapport_core::db;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::domain::reads::time_edges;
use crate::domain::segment::Cause;
use crate::live::{self, Touched};
use crate::store::{scoring, segment, sweep};

/// The most time's effects on a segment wait, on the service's clock.
pub const SWEEP_EVERY: chrono::Duration = chrono::Duration::seconds(30);
/// How far back a sweep starts before where the last one ended.
const SWEEP_OVERLAP: chrono::Duration = chrono::Duration::minutes(2);
/// How often the sweeper looks for segments due (real time).
const POLL: Duration = Duration::from_secs(2);
/// Segments taken per look.
const SEGMENTS_PER_LOOK: i64 = 100;
/// Contacts judged again per transaction.
const CONTACTS_PER_TRANSACTION: usize = 1000;

pub struct Sweeper {
    pub pool: PgPool,
    pub clock: Clock,
}

impl Sweeper {
    pub async fn run(self, stopping: CancellationToken) {
        loop {
            if let Err(error) = self.sweep_due().await {
                tracing::warn!(error = %error, "time sweep failed");
            }
            tokio::select! {
                () = stopping.cancelled() => return,
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }

    async fn sweep_due(&self) -> anyhow::Result<()> {
        let now = self.clock.now();
        let mut tx = db::begin(&self.pool).await?;
        let due = sweep::due(&mut tx, now - SWEEP_EVERY, SEGMENTS_PER_LOOK).await?;
        tx.commit().await?;
        // One segment's failure does not hold up the others' sweeps.
        for (tenant, segment) in due {
            if let Err(error) = self.sweep(tenant, segment, now).await {
                tracing::warn!(segment = %segment, error = %error, "time sweep of a segment failed");
            }
        }
        Ok(())
    }

    /// Applies time's effects on `segment` up to `now`. The contacts are
    /// judged in transactions of their own, and the sweep is recorded in
    /// the last: a sweep cut short is done again, and judging again what
    /// is already current changes nothing.
    async fn sweep(&self, tenant: Uuid, segment: Uuid, now: DateTime<Utc>) -> anyhow::Result<()> {
        let tenant_id = tenant.to_string();
        let settings = [("app.tenant_id", tenant_id.as_str())];
        let mut tx = db::begin_with_settings(&self.pool, &settings).await?;
        live::take_turn(&mut tx, tenant).await?;
        let Some(from) = sweep::take(&mut tx, segment).await? else {
            return Ok(());
        };
        let rule = match segment::live_rule(&mut tx, segment).await? {
            Some(stored) => scoring::stored_rule(&mut tx, &stored.rule).await?,
            None => None,
        };
        let Some(rule) = rule else {
            // Archived, deleted or no longer valid: nothing to sweep.
            sweep::schedule(&mut tx, tenant, segment, false, now).await?;
            tx.commit().await?;
            return Ok(());
        };
        // From a little before where the last sweep ended: a fact committed
        // after that sweep read the tables, but dated before its end, is
        // still looked at (judging again what is current changes nothing).
        let edges = time_edges(&rule);
        let window = (from - SWEEP_OVERLAP, now);
        let crossed = sweep::crossed(&mut tx, tenant, segment, &edges, window).await?;
        let mut changes = 0;
        for contacts in crossed.chunks(CONTACTS_PER_TRANSACTION) {
            let touched = Touched::for_segment(segment, contacts);
            changes += live::judge_again(&mut tx, tenant, &touched, Cause::Time, now).await?;
            tx.commit().await?;
            tx = db::begin_with_settings(&self.pool, &settings).await?;
            live::take_turn(&mut tx, tenant).await?;
            if sweep::take(&mut tx, segment).await?.is_none() {
                return Ok(());
            }
        }
        sweep::advance(&mut tx, segment, now).await?;
        tx.commit().await?;
        if changes > 0 {
            tracing::info!(segment = %segment, contacts = crossed.len(), changes, "time sweep");
        }
        Ok(())
    }
}
