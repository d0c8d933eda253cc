//! Background work: builds of queued segments, and the purge of archived
//! segments whose retention ran out. Any replica may run them; a build is
//! leased from the queue, so each runs once, and a crashed builder's lease
//! runs out for another to take.

use std::sync::Arc;
use std::time::Duration;

use rapport_core::Clock;
use rapport_core::Violations;
use rapport_core::db;
use rapport_proto::segmentation::v1::Rule as PbRule;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::domain::validate;
use crate::store::build::{self, Claimed};
use crate::store::segment;

/// How long a builder holds a queued build before another may take it.
const LEASE: Duration = Duration::from_secs(600);
/// How often an idle builder looks at the queue (other replicas' requests,
/// expired leases); requests made here wake it at once.
const POLL: Duration = Duration::from_secs(1);
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
        if let Some((rule, version)) = build::begin(&mut tx, claimed.segment).await? {
            let rule = typed(&rule)?;
            let outcome = build::build(
                &mut tx,
                claimed.tenant,
                claimed.segment,
                &rule,
                version,
                self.clock.now(),
            )
            .await?;
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

/// A stored rule, checked again: it was valid when saved, and is read
/// back the same way.
fn typed(rule: &PbRule) -> anyhow::Result<crate::domain::rule::Rule> {
    let mut violations = Violations::default();
    validate::validate(rule, "rule", &mut violations)
        .ok_or_else(|| anyhow::anyhow!("the stored rule no longer passes its checks"))
}
