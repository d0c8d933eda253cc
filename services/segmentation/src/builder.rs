//! Background work: builds of queued segments, and the purge of archived
//! segments whose retention ran out. Any replica may run them; a build is
//! leased from the queue, so each runs once, and a crashed builder's lease
//! runs out for another to take.

use std::sync::Arc;
use std::time::Duration;

use rapport_core::Clock;
use rapport_core::db;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::domain::reads::Reads;
use crate::domain::segment::Cause;
use crate::live::{self, Touched};
use crate::store::build::{self, Claimed};
use crate::store::{scoring, segment};

/// How long a builder holds a queued build before another may take it.
const LEASE: Duration = Duration::from_secs(600);
/// How often an idle builder looks at the queue (other replicas' requests,
/// expired leases); requests made here wake it at once.
const POLL: Duration = Duration::from_secs(1);
/// Contacts judged again at once in the segments built on a built one.
const CASCADE_CHUNK: usize = 1000;
/// How often archived segments are looked at for purging.
const PURGE_EVERY: chrono::Duration = chrono::Duration::minutes(1);

/// Runs queued builds and purges until `stopping`.
pub struct Builder {
    pub pool: PgPool,
    pub clock: Clock,
    /// Woken when a call here queues a build.
    pub wake: Arc<Notify>,
}

impl Builder {
    pub async fn run(self, stopping: CancellationToken) {
        // On the service's clock, so that a test moving it sees the purge.
        let mut next_purge = self.clock.now();
        loop {
            match self.build_next().await {
                Ok(true) => continue,
                Ok(false) => {}
                Err(error) => tracing::warn!(error = %error, "segment build queue unavailable"),
            }
            if self.clock.now() >= next_purge {
                next_purge = self.clock.now() + PURGE_EVERY;
                if let Err(error) = self.purge().await {
                    tracing::warn!(error = %error, "purging archived segments failed");
                }
            }
            tokio::select! {
                () = stopping.cancelled() => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// Builds the next queued segment; false when none is waiting.
    async fn build_next(&self) -> anyhow::Result<bool> {
        let mut tx = db::begin(&self.pool).await?;
        let claimed = build::claim(&mut tx, self.clock.now(), LEASE).await?;
        tx.commit().await?;
        let Some(claimed) = claimed else {
            return Ok(false);
        };
        if let Err(error) = self.build(&claimed).await {
            tracing::warn!(segment = %claimed.segment, error = %error, "segment build failed");
            let mut tx = self.tenant_tx(claimed.tenant).await?;
            build::record_failure(
                &mut tx,
                claimed.segment,
                &error.to_string(),
                self.clock.now(),
            )
            .await?;
            tx.commit().await?;
        }
        Ok(true)
    }

    async fn tenant_tx(
        &self,
        tenant: Uuid,
    ) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
        db::begin_with_settings(&self.pool, &[("app.tenant_id", &tenant.to_string())]).await
    }

    async fn build(&self, claimed: &Claimed) -> anyhow::Result<()> {
        let mut tx = self.tenant_tx(claimed.tenant).await?;
        if let Some(begun) = build::begin(&mut tx, claimed.segment).await? {
            let rule = scoring::stored_rule(&mut tx, &begun.rule)
                .await?
                .ok_or_else(|| anyhow::anyhow!("the stored rule no longer passes its checks"))?;
            let cause = Cause::of_build(begun.built_version, begun.rule_version);
            let outcome = build::build(
                &mut tx,
                claimed.tenant,
                claimed.segment,
                &rule,
                begun.rule_version,
                cause,
                self.clock.now(),
            )
            .await?;
            // Segments built on this one follow it, for the same cause.
            for contacts in outcome.changed.chunks(CASCADE_CHUNK) {
                let mut touched = Touched::default();
                for contact in contacts {
                    touched.touch(*contact, Reads::segment(claimed.segment));
                }
                live::judge_again(&mut tx, claimed.tenant, &touched, cause, self.clock.now())
                    .await?;
            }
            tracing::info!(
                segment = %claimed.segment,
                rule_version = outcome.rule_version,
                entered = outcome.entered,
                exited = outcome.exited,
                members = outcome.members,
                "segment built"
            );
        }
        build::release(&mut tx, claimed).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn purge(&self) -> anyhow::Result<()> {
        let now = self.clock.now();
        let mut tx = db::begin_with_settings(&self.pool, &[("app.purger", "on")]).await?;
        let due = segment::due_for_purge(&mut tx, now, 100).await?;
        tx.commit().await?;
        for (tenant, id) in due {
            let mut tx = self.tenant_tx(tenant).await?;
            if segment::purge(&mut tx, id, now).await? {
                tracing::info!(segment = %id, "archived segment deleted for good");
            }
            tx.commit().await?;
        }
        Ok(())
    }
}
