//! Rust SDK for Rapport: typed clients over one channel that carry the
//! caller's credential and a deadline on every call, and a retry helper for
//! calls that are safe to repeat.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use rapport_client::{Auth, RapportClient};
//! use rapport_proto::contacts::v1::ListContactsRequest;
//!
//! let client = RapportClient::connect("http://127.0.0.1:50051", Auth::ApiKey("rk_...".into())).await?;
//! let page = client.contacts().list_contacts(ListContactsRequest::default()).await?;
//! # Ok(()) }
//! ```

use std::future::Future;
use std::time::Duration;

use rapport_core::credential::Outbound;
use rapport_proto::contacts::v1::contacts_service_client::ContactsServiceClient;
use rapport_proto::feedback::v1::feedback_service_client::FeedbackServiceClient;
use rapport_proto::gateway::v1::gateway_admin_service_client::GatewayAdminServiceClient;
use rapport_proto::segmentation::v1::segmentation_service_client::SegmentationServiceClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

/// How calls authenticate.
#[derive(Clone)]
pub enum Auth {
    /// An API key, for calls through the gateway (`authorization: Bearer`).
    ApiKey(String),
    /// Internal credentials signed by an identity the service trusts, for
    /// calls straight to a service (operators and local development; see
    /// `rapport_core::credential`).
    Internal(Outbound),
    /// Nothing: only the gateway's public methods (a customer answering a
    /// survey with the token in the request) accept such calls.
    Public,
}

/// Adds the credential, and the default deadline when the call has none.
#[derive(Clone)]
pub struct CallContext {
    credential: Credential,
    timeout: Duration,
}

/// How a call authenticates.
#[derive(Clone)]
enum Credential {
    /// The same value on every call: an API key.
    Fixed(&'static str, MetadataValue<Ascii>),
    /// Minted when it has to be.
    Internal(Outbound),
    None,
}

impl tonic::service::Interceptor for CallContext {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        match &mut self.credential {
            Credential::Fixed(header, value) => {
                request.metadata_mut().insert(*header, value.clone());
            }
            Credential::Internal(outbound) => request = outbound.call(request)?,
            Credential::None => {}
        }
        if !request.metadata().contains_key("grpc-timeout") {
            request.set_timeout(self.timeout);
        }
        rapport_core::telemetry::inject_current_context(request.metadata_mut());
        Ok(request)
    }
}

pub type Transport = InterceptedService<Channel, CallContext>;

/// One connection to Rapport with typed clients for each service.
#[derive(Clone)]
pub struct RapportClient {
    transport: Transport,
}

impl RapportClient {
    /// Connects to `endpoint` (the gateway, or a service directly).
    pub async fn connect(endpoint: &str, auth: Auth) -> anyhow::Result<Self> {
        let channel = Endpoint::from_shared(endpoint.to_owned())?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .connect()
            .await?;
        Self::with_channel(channel, auth, Duration::from_secs(30))
    }

    /// Uses an existing channel; `timeout` is the deadline of calls that set none.
    pub fn with_channel(channel: Channel, auth: Auth, timeout: Duration) -> anyhow::Result<Self> {
        let credential = match auth {
            Auth::ApiKey(key) => Credential::Fixed(
                "authorization",
                MetadataValue::try_from(format!("Bearer {key}"))?,
            ),
            Auth::Internal(outbound) => Credential::Internal(outbound),
            Auth::Public => Credential::None,
        };
        Ok(Self {
            transport: InterceptedService::new(
                channel,
                CallContext {
                    credential,
                    timeout,
                },
            ),
        })
    }

    pub fn contacts(&self) -> ContactsServiceClient<Transport> {
        ContactsServiceClient::new(self.transport.clone())
    }

    /// Surveys, invitations, responses and summaries.
    pub fn feedback(&self) -> FeedbackServiceClient<Transport> {
        FeedbackServiceClient::new(self.transport.clone())
    }

    /// Segments and lists: builds, members, previews and explanations.
    pub fn segmentation(&self) -> SegmentationServiceClient<Transport> {
        SegmentationServiceClient::new(self.transport.clone())
    }

    /// Tenants and API keys; needs the operator key as the API key.
    pub fn gateway_admin(&self) -> GatewayAdminServiceClient<Transport> {
        GatewayAdminServiceClient::new(self.transport.clone())
    }

    /// The authenticated transport, for clients of services added later.
    pub fn transport(&self) -> Transport {
        self.transport.clone()
    }
}

/// Retries `call` while it fails in a way a retry can mend, with
/// exponential backoff (100 ms, 200 ms, ... or the server's RetryInfo delay
/// when longer), up to `attempts` tries: UNAVAILABLE (a service restarting
/// or not reachable yet), a connection that broke under the call (a
/// gateway or service being replaced), and RESOURCE_EXHAUSTED with a
/// RetryInfo (shed or rate limited). Only for calls that are safe to
/// repeat: reads, and writes made idempotent with a `request_id`.
pub async fn with_retries<T, F, Fut>(attempts: u32, mut call: F) -> Result<T, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, tonic::Status>>,
{
    let mut backoff = Duration::from_millis(100);
    let mut attempt = 1;
    loop {
        match call().await {
            Err(status) if attempt < attempts => {
                let Some(asked) = retry_delay(&status) else {
                    return Err(status);
                };
                tokio::time::sleep(backoff.max(asked)).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// How long to wait before retrying a call that failed with `status`
/// (zero: no wait of the server's own), or `None` when a retry cannot help.
fn retry_delay(status: &tonic::Status) -> Option<Duration> {
    use tonic_types::StatusExt as _;
    let asked = status
        .get_error_details()
        .retry_info()
        .and_then(|info| info.retry_delay);
    match status.code() {
        tonic::Code::Unavailable => Some(asked.unwrap_or_default()),
        tonic::Code::ResourceExhausted => asked,
        // The connection broke under the call (tonic reports it as
        // cancelled or unknown), not a cancellation of the caller's own.
        tonic::Code::Cancelled | tonic::Code::Unknown if is_transport_failure(status) => {
            Some(Duration::ZERO)
        }
        _ => None,
    }
}

fn is_transport_failure(status: &tonic::Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(error) = source {
        if error.is::<tonic::transport::Error>() {
            return true;
        }
        source = error.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn retries_unavailable_then_succeeds() {
        let tries = AtomicU32::new(0);
        let result = with_retries(5, || async {
            if tries.fetch_add(1, Ordering::SeqCst) < 2 {
                Err(tonic::Status::unavailable("down"))
            } else {
                Ok(7)
            }
        })
        .await;
        assert_eq!(result.unwrap(), 7);
        assert_eq!(tries.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn other_errors_and_exhausted_attempts_are_returned() {
        let tries = AtomicU32::new(0);
        let result: Result<(), _> = with_retries(5, || async {
            tries.fetch_add(1, Ordering::SeqCst);
            Err(tonic::Status::invalid_argument("bad"))
        })
        .await;
        assert_eq!(result.unwrap_err().code(), tonic::Code::InvalidArgument);
        assert_eq!(tries.load(Ordering::SeqCst), 1);

        let result: Result<(), _> =
            with_retries(3, || async { Err(tonic::Status::unavailable("down")) }).await;
        assert_eq!(result.unwrap_err().code(), tonic::Code::Unavailable);
    }

    #[tokio::test(start_paused = true)]
    async fn resource_exhausted_is_retried_only_with_a_retry_delay_and_after_it() {
        use tonic_types::{ErrorDetails, StatusExt as _};
        let tries = AtomicU32::new(0);
        let started = tokio::time::Instant::now();
        let result = with_retries(5, || async {
            if tries.fetch_add(1, Ordering::SeqCst) == 0 {
                let mut details = ErrorDetails::new();
                details.set_retry_info(Some(Duration::from_secs(2)));
                Err(tonic::Status::with_error_details(
                    tonic::Code::ResourceExhausted,
                    "shed",
                    details,
                ))
            } else {
                Ok(1)
            }
        })
        .await;
        assert_eq!(result.unwrap(), 1);
        assert!(started.elapsed() >= Duration::from_secs(2));

        let result: Result<(), _> = with_retries(5, || async {
            Err(tonic::Status::resource_exhausted("quota, no delay given"))
        })
        .await;
        assert_eq!(result.unwrap_err().code(), tonic::Code::ResourceExhausted);
    }
}
