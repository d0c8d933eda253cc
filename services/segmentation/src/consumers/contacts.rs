//! Follows the contacts feed into the profile, stage and event
//! projections. A batch is applied set-based: runs of changes that commute
//! (profiles, stages, consents, events) are gathered and written with one
//! statement each; a merge, deletion or erasure first writes what was
//! gathered, so the feed's order holds. Then the segments the batch can
//! affect are judged again for the contacts it touched.

use chrono::{DateTime, Utc};
use futures::FutureExt as _;
use futures::future::BoxFuture;
use rapport_core::Clock;
use rapport_core::convert::to_datetime;
use rapport_events::consumer::{
    Handler, Subscription, forget_projection, payload, snapshot_payload,
};
use rapport_events::snapshot::kind;
use rapport_proto::EventPayload as _;
use rapport_proto::contacts::v1::{
    ContactConsentChanged, ContactCreated, ContactDeleted, ContactErased, ContactEventRecorded,
    ContactLifecycleChanged, ContactMerged, ContactSnapshot, ContactUpdated, Event,
};
use rapport_proto::events::v1::{EventEnvelope, SnapshotItem};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::projection::{EventRow, Profile};
use crate::domain::reads::Reads;
use crate::domain::segment::Cause;
use crate::live::{self, Touched};
use crate::store::projection::{self, ConsentUpdate, StageEntry};

/// What segmentation follows of the contacts feed, and where its cursor is.
pub const SUBSCRIPTION: Subscription = Subscription {
    consumer: "segmentation.contacts",
    producer: "contacts",
    schema: "segmentation",
    types: &[
        ContactCreated::EVENT_TYPE,
        ContactUpdated::EVENT_TYPE,
        ContactMerged::EVENT_TYPE,
        ContactDeleted::EVENT_TYPE,
        ContactErased::EVENT_TYPE,
        ContactLifecycleChanged::EVENT_TYPE,
        ContactConsentChanged::EVENT_TYPE,
        ContactEventRecorded::EVENT_TYPE,
    ],
};

pub struct ContactChanges {
    pub clock: Clock,
}

/// Changes gathered from a run of commuting events.
#[derive(Default)]
struct Gathered {
    profiles: Vec<Profile>,
    stages: Vec<StageEntry>,
    consents: Vec<ConsentUpdate>,
    events: Vec<EventRow>,
}

impl Gathered {
    /// Writes what was gathered: profiles first (a later stage or consent
    /// change of the same contact is newer than the profile it follows).
    async fn write(
        &mut self,
        tx: &mut PgConnection,
        tenant: Uuid,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let gathered = std::mem::take(self);
        projection::upsert_profiles(tx, tenant, &gathered.profiles).await?;
        projection::enter_stages(tx, tenant, &gathered.stages, true).await?;
        projection::set_consents(tx, &gathered.consents).await?;
        projection::insert_events(tx, tenant, &gathered.events, now).await?;
        Ok(())
    }
}

fn ids(ids: impl IntoIterator<Item = impl AsRef<str>>) -> anyhow::Result<Vec<Uuid>> {
    ids.into_iter()
        .map(|id| Ok(Uuid::parse_str(id.as_ref())?))
        .collect()
}

/// A new contact also entered its first stage when it was created.
fn initial_stage(profile: &Profile) -> Option<StageEntry> {
    (profile.stage != 0).then_some(StageEntry {
        contact_id: profile.contact_id,
        stage: profile.stage,
        at: profile.create_time,
    })
}

impl Handler for ContactChanges {
    fn apply<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        events: &'a [EventEnvelope],
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        async move {
            let Some(first) = events.first() else {
                return Ok(());
            };
            let tenant = Uuid::parse_str(&first.tenant_id)?;
            live::take_turn(tx, tenant).await?;
            // One moment for the batch: its events are applied and its
            // contacts judged at it, so the time sweep knows which events
            // were dated ahead of their judging.
            let now = self.clock.now();
            let mut gathered = Gathered::default();
            let mut touched = Touched::default();
            for event in events {
                let at = event.occur_time.as_ref().and_then(to_datetime);
                if let Some(created) = payload::<ContactCreated>(event)? {
                    let profile = Profile::from_contact(&created.contact.unwrap_or_default())?;
                    touched.touch(profile.contact_id, Reads::new_contact());
                    gathered.stages.extend(initial_stage(&profile));
                    gathered.profiles.push(profile);
                } else if let Some(updated) = payload::<ContactUpdated>(event)? {
                    let profile = Profile::from_contact(&updated.contact.unwrap_or_default())?;
                    touched.touch(profile.contact_id, Reads::profile());
                    gathered.profiles.push(profile);
                } else if let Some(changed) = payload::<ContactLifecycleChanged>(event)? {
                    let contact_id = Uuid::parse_str(&changed.contact_id)?;
                    touched.touch(contact_id, Reads::stage());
                    gathered.stages.push(StageEntry {
                        contact_id,
                        stage: i16::try_from(changed.to_stage)?,
                        at: at.unwrap_or_default(),
                    });
                } else if let Some(changed) = payload::<ContactConsentChanged>(event)? {
                    let contact_id = Uuid::parse_str(&changed.contact_id)?;
                    touched.touch(contact_id, Reads::profile());
                    gathered.consents.push(ConsentUpdate {
                        contact_id,
                        channel: i16::try_from(changed.channel)?,
                        state: i16::try_from(changed.to_status)?.max(1),
                    });
                } else if let Some(recorded) = payload::<ContactEventRecorded>(event)? {
                    let row = EventRow::from_event(&recorded.event.unwrap_or_default())?;
                    touched.touch(row.contact_id, Reads::event(&row.event_type));
                    gathered.events.push(row);
                } else if let Some(merged) = payload::<ContactMerged>(event)? {
                    gathered.write(tx, tenant, now).await?;
                    let duplicate = Uuid::parse_str(&merged.duplicate_id)?;
                    let survivor = Uuid::parse_str(&merged.survivor_id)?;
                    projection::merge(tx, tenant, duplicate, survivor, now).await?;
                    touched.forget(duplicate);
                    touched.touch(survivor, Reads::everything());
                } else if let Some(deleted) = payload::<ContactDeleted>(event)? {
                    gathered.write(tx, tenant, now).await?;
                    let gone = ids([&deleted.contact_id])?;
                    projection::forget(tx, tenant, &gone).await?;
                    gone.iter().for_each(|id| touched.forget(*id));
                } else if let Some(erased) = payload::<ContactErased>(event)? {
                    gathered.write(tx, tenant, now).await?;
                    let all = std::iter::once(&erased.contact_id).chain(&erased.merged_ids);
                    let gone = ids(all)?;
                    projection::forget(tx, tenant, &gone).await?;
                    gone.iter().for_each(|id| touched.forget(*id));
                }
            }
            gathered.write(tx, tenant, now).await?;
            live::judge_again(tx, tenant, &touched, Cause::Event, now).await?;
            Ok(())
        }
        .boxed()
    }

    /// The contacts as they are, with their stage histories, and their
    /// timelines. Merges and erasures already happened in what the
    /// snapshot holds.
    fn snapshot_kinds(&self) -> Vec<String> {
        vec![kind::<ContactSnapshot>(), kind::<Event>()]
    }

    fn load<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        items: &'a [SnapshotItem],
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        async move {
            let Some(first) = items.first() else {
                return Ok(());
            };
            let tenant = Uuid::parse_str(&first.tenant_id)?;
            let mut profiles = Vec::new();
            let mut stages = Vec::new();
            let mut events = Vec::new();
            for item in items {
                if let Some(snapshot) = snapshot_payload::<ContactSnapshot>(item)? {
                    let profile = Profile::from_contact(&snapshot.contact.unwrap_or_default())?;
                    stages.extend(initial_stage(&profile));
                    for change in &snapshot.lifecycle_history {
                        stages.push(StageEntry {
                            contact_id: profile.contact_id,
                            stage: i16::try_from(change.to_stage)?,
                            at: change
                                .change_time
                                .as_ref()
                                .and_then(to_datetime)
                                .unwrap_or_default(),
                        });
                    }
                    profiles.push(profile);
                } else if let Some(event) = snapshot_payload::<Event>(item)? {
                    events.push(EventRow::from_event(&event)?);
                }
            }
            projection::upsert_profiles(tx, tenant, &profiles).await?;
            // The profiles carry the current stage; history only here.
            projection::enter_stages(tx, tenant, &stages, false).await?;
            projection::insert_events(tx, tenant, &events, self.clock.now()).await?;
            Ok(())
        }
        .boxed()
    }

    fn reset<'a>(&'a self, tx: &'a mut PgConnection) -> BoxFuture<'a, anyhow::Result<()>> {
        async move {
            forget_projection(
                tx,
                &[
                    "segmentation.profiles",
                    "segmentation.stage_changes",
                    "segmentation.events",
                ],
            )
            .await?;
            Ok(())
        }
        .boxed()
    }
}
