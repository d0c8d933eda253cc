//! Which ids name contacts of a tenant. The projection of the contacts
//! feed answers for the contacts it has brought; the contacts service
//! answers for the rest, such as a contact created a moment ago, so nobody
//! is turned away for the feed's lag.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use rapport_core::credential::{Access, Identity, Scope, TenantOutbound};
use rapport_core::db::{Database, finish_read};
use rapport_core::pagination::{MAX_PAGE_BYTES, MAX_PAGE_SIZE};
use rapport_core::{ApiError, ApiResult, deadline, telemetry};
use rapport_proto::contacts::v1::ListContactsRequest;
use rapport_proto::contacts::v1::contacts_service_client::ContactsServiceClient;
use rapport_proto::feedback::v1::ErrorReason;
use tonic::Code;
use tonic::transport::Channel;
use uuid::Uuid;

use crate::store::contacts;

/// The longest wait for the contacts service, whatever is left of the
/// call's deadline.
const ASK_TIMEOUT: Duration = Duration::from_secs(5);
/// When to try again after the contacts service could not answer.
const RETRY_AFTER: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct ContactDirectory {
    db: Database,
    channel: Channel,
    credentials: TenantOutbound,
}

impl ContactDirectory {
    /// Asks the contacts service at `contacts_url`, as the service
    /// `identity` names, acting for the tenant of each call.
    pub fn new(db: Database, contacts_url: &str, identity: Arc<Identity>) -> anyhow::Result<Self> {
        Ok(Self {
            db,
            channel: rapport_core::channel::to_service("contacts", contacts_url)?,
            credentials: TenantOutbound::new(
                identity,
                "contacts",
                vec![Scope::new("contacts", Access::Read)],
            ),
        })
    }

    /// Of `ids`, those that name no contact of `tenant`: gone by the feed,
    /// or unknown to the contacts service. Ids gone later than this answer
    /// are caught by [`contacts::gone_among`] under the invitation locks.
    pub async fn unknown_among(&self, tenant: Uuid, ids: &[Uuid]) -> ApiResult<HashSet<Uuid>> {
        let mut tx = self.db.begin_tenant_read(tenant).await?;
        let noted = contacts::noted_among(&mut tx, ids).await?;
        finish_read(tx);
        let mut unknown: HashSet<Uuid> = noted
            .iter()
            .filter(|(_, gone)| *gone)
            .map(|(id, _)| *id)
            .collect();
        let seen: HashSet<Uuid> = noted.into_iter().map(|(id, _)| id).collect();
        let unseen: Vec<Uuid> = ids
            .iter()
            .filter(|id| !seen.contains(id))
            .copied()
            .collect();
        if !unseen.is_empty() {
            let live = self.live_among(tenant, &unseen).await?;
            unknown.extend(unseen.into_iter().filter(|id| !live.contains(id)));
        }
        Ok(unknown)
    }

    /// Of `ids`, those the contacts service knows as live contacts of
    /// `tenant`.
    async fn live_among(&self, tenant: Uuid, ids: &[Uuid]) -> ApiResult<HashSet<Uuid>> {
        // Whole contacts come back, at most a page's bytes at a time.
        let mut client = ContactsServiceClient::with_interceptor(
            self.channel.clone(),
            self.credentials.for_tenant(tenant),
        )
        .max_decoding_message_size(2 * MAX_PAGE_BYTES);
        let mut message = ListContactsRequest {
            ids: ids.iter().map(Uuid::to_string).collect(),
            page_size: MAX_PAGE_SIZE as i32,
            ..Default::default()
        };
        let mut live = HashSet::with_capacity(ids.len());
        loop {
            let mut request = tonic::Request::new(message.clone());
            telemetry::inject_current_context(request.metadata_mut());
            request.set_timeout(deadline::within(ASK_TIMEOUT));
            let page = client
                .list_contacts(request)
                .await
                .map_err(unanswered)?
                .into_inner();
            live.extend(
                page.contacts
                    .iter()
                    .filter_map(|contact| Uuid::parse_str(&contact.id).ok()),
            );
            if page.next_page_token.is_empty() {
                return Ok(live);
            }
            message.page_token = page.next_page_token;
        }
    }
}

/// The contacts service's failure as this call's error: one it may get
/// over (restarting, busy, slow, a connection lost) is the caller's to
/// retry; any other (a trust list that does not let feedback ask) is ours.
fn unanswered(status: tonic::Status) -> ApiError {
    match status.code() {
        Code::Unavailable
        | Code::DeadlineExceeded
        | Code::ResourceExhausted
        | Code::Aborted
        | Code::Cancelled
        | Code::Unknown => ApiError::unavailable(
            ErrorReason::ContactsUnavailable,
            "the contacts service could not say which of the ids name contacts; \
             nothing was written; retry with the same request_id",
            RETRY_AFTER,
        ),
        _ => ApiError::internal(anyhow::anyhow!(
            "the contacts service refused ListContacts: {status:?}"
        )),
    }
}
