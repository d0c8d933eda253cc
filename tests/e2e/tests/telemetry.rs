//! What a platform team's tracing backend receives: the suite runs as
//! processes exporting to an OTLP receiver on loopback, writing JSON logs,
//! and is called through the gateway as a client would call it.

use std::time::Duration;

use rapport_e2e::{create_tenant, keyed_client, named};
use rapport_proto::contacts::v1::contacts_service_client::ContactsServiceClient;
use rapport_proto::contacts::v1::*;
use rapport_testkit::otlp::{ExportedSpan, OtlpReceiver, attribute, hex};
use rapport_testkit::process::{ProcessStack, STACK_OPERATOR_KEY};
use rapport_testkit::{TestDatabase, identity_key, reason};
use tonic::Code;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// Recognisable personal data, written through the API; none of it may
/// reach a span, a metric or a log line.
const EMAIL: &str = "ada.telemetry.canary@example.org";
const PHONE: &str = "+442071838750";
const FIRST_NAME: &str = "Adelaide-Canary";
const LAST_NAME: &str = "Lovelace-Canary";

/// A client's W3C trace context: its trace id and the span the call is made in.
struct ClientTrace {
    trace_id: String,
    span_id: String,
}

impl ClientTrace {
    fn new() -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        Self {
            trace_id: id.clone(),
            span_id: id[..16].to_owned(),
        }
    }

    fn header(&self) -> String {
        format!("00-{}-{}-01", self.trace_id, self.span_id)
    }
}

/// What an instrumented application sends with each call: its key and its
/// trace context (with vendor state Rapport must not carry in).
#[derive(Clone)]
struct ClientHeaders {
    authorization: MetadataValue<Ascii>,
    traceparent: MetadataValue<Ascii>,
}

impl Interceptor for ClientHeaders {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        let metadata = request.metadata_mut();
        metadata.insert("authorization", self.authorization.clone());
        metadata.insert("traceparent", self.traceparent.clone());
        metadata.insert(
            "tracestate",
            MetadataValue::from_static("vendor=from-outside"),
        );
        Ok(request)
    }
}

/// A contacts client that calls with `key` in the client's `trace`.
fn traced_client(
    channel: Channel,
    key: &str,
    trace: &ClientTrace,
) -> ContactsServiceClient<InterceptedService<Channel, ClientHeaders>> {
    let headers = ClientHeaders {
        authorization: format!("Bearer {key}").parse().unwrap(),
        traceparent: trace.header().parse().unwrap(),
    };
    ContactsServiceClient::with_interceptor(channel, headers)
}

fn one<'a>(
    spans: &'a [ExportedSpan],
    what: &str,
    test: impl Fn(&ExportedSpan) -> bool,
) -> &'a ExportedSpan {
    let found: Vec<&ExportedSpan> = spans.iter().filter(|span| test(span)).collect();
    assert_eq!(found.len(), 1, "one {what}, found {found:#?}");
    found[0]
}

const ERROR: i32 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tracing_backend_sees_calls_hops_events_metrics_and_logs_without_personal_data() {
    let receiver = OtlpReceiver::start().await.unwrap();
    let logs = std::env::temp_dir().join(format!("rapport-telemetry-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&logs).unwrap();
    let telemetry = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
        ("OTEL_METRIC_EXPORT_INTERVAL", "500".to_owned()),
        ("RAPPORT_LOG_FORMAT", "json".to_owned()),
        // Refusals are logged at info; everything else logs warnings only,
        // which must not thin out the traces.
        ("RUST_LOG", "warn,rapport_core::telemetry=info".to_owned()),
    ];
    let mut stack =
        ProcessStack::start_logging(TestDatabase::create().await, &telemetry, Some(logs.clone()))
            .await
            .unwrap();
    let operator = keyed_client(stack.gateway.channel.clone(), STACK_OPERATOR_KEY);
    let key = create_tenant(&operator, named("observed"), &["contacts:write"]).await;

    // A key holder's call continues the client's trace.
    let created_trace = ClientTrace::new();
    let contact = traced_client(stack.gateway.channel.clone(), &key.secret, &created_trace)
        .create_contact(CreateContactRequest {
            contact: Some(Contact {
                email: EMAIL.into(),
                phone: PHONE.into(),
                first_name: FIRST_NAME.into(),
                last_name: LAST_NAME.into(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .contact
        .unwrap();

    // A call the service refuses (NOT_FOUND), and a method no service has.
    let missing_trace = ClientTrace::new();
    let missing = traced_client(stack.gateway.channel.clone(), &key.secret, &missing_trace)
        .get_contact(GetContactRequest {
            id: uuid::Uuid::now_v7().to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);

    // A wrong key: refused at the gateway, in a trace of Rapport's own.
    let refused_trace = ClientTrace::new();
    let wrong_key = format!("rk_{}.{}", "0123456789ab", "B".repeat(43));
    let refused = traced_client(stack.gateway.channel.clone(), &wrong_key, &refused_trace)
        .get_contact(GetContactRequest {
            id: contact.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);

    // Straight to a service without a credential: not continued either.
    let uncredentialed_trace = ClientTrace::new();
    let uncredentialed = traced_client(
        stack.contacts.channel.clone(),
        "none",
        &uncredentialed_trace,
    )
    .get_contact(GetContactRequest {
        id: contact.id.clone(),
    })
    .await
    .unwrap_err();
    assert_eq!(uncredentialed.code(), Code::Unauthenticated);

    // An erasure, which feedback applies from the contacts feed.
    let erased_trace = ClientTrace::new();
    traced_client(stack.gateway.channel.clone(), &key.secret, &erased_trace)
        .erase_contact(EraseContactRequest {
            id: contact.id.clone(),
        })
        .await
        .unwrap();
    let applied = |spans: &[ExportedSpan]| {
        spans.iter().any(|span| {
            span.span.name == "process contacts"
                && span
                    .span
                    .links
                    .iter()
                    .any(|link| hex(&link.trace_id) == erased_trace.trace_id)
        })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !applied(&receiver.spans()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "feedback's apply span linked to the erasure never arrived"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Stopped as a platform stops them, the processes flush what is left.
    stack.stop().await.unwrap();
    let spans = receiver.spans();

    // The create: client -> gateway server -> gateway client -> contacts server.
    let in_trace = |trace: &ClientTrace| -> Vec<ExportedSpan> {
        spans
            .iter()
            .filter(|span| span.trace_id() == trace.trace_id)
            .cloned()
            .collect()
    };
    let created = in_trace(&created_trace);
    let name = "rapport.contacts.v1.ContactsService/CreateContact";
    let gateway_server = one(&created, "gateway server span", |span| {
        span.service == "rapport-gateway" && span.span.name == name && span.span.kind == 2
    });
    let gateway_client = one(&created, "gateway client span", |span| {
        span.service == "rapport-gateway" && span.span.name == name && span.span.kind == 3
    });
    let contacts_server = one(&created, "contacts server span", |span| {
        span.service == "rapport-contacts" && span.span.name == name && span.span.kind == 2
    });
    assert_eq!(gateway_server.parent_span_id(), created_trace.span_id);
    assert_eq!(gateway_client.parent_span_id(), gateway_server.span_id());
    assert_eq!(contacts_server.parent_span_id(), gateway_client.span_id());
    assert!(
        gateway_server.span.trace_state.is_empty() && contacts_server.span.trace_state.is_empty(),
        "a caller's tracestate is not carried in"
    );
    for span in [gateway_server, gateway_client, contacts_server] {
        assert_eq!(span.attribute("rpc.system").as_deref(), Some("grpc"));
        assert_eq!(
            span.attribute("rpc.service").as_deref(),
            Some("rapport.contacts.v1.ContactsService")
        );
        assert_eq!(
            span.attribute("rpc.method").as_deref(),
            Some("CreateContact")
        );
        // The status arrives in trailers after the message.
        assert_eq!(span.attribute("rpc.grpc.status_code").as_deref(), Some("0"));
    }
    // The contact's transaction, once, under the contacts server span.
    let transaction = one(&created, "transaction span", |span| {
        span.service == "rapport-contacts" && span.span.name == "transaction"
    });
    assert_eq!(transaction.parent_span_id(), contacts_server.span_id());
    let statements: u32 = transaction
        .attribute("rapport.db.statements")
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        statements >= 2,
        "a write and the COMMIT at least: {statements}"
    );
    assert_eq!(
        transaction.attribute("rapport.db.outcome").as_deref(),
        Some("commit")
    );

    // NOT_FOUND: the client's fault, not an error of the server's span, but
    // the gateway's client span counts any failure, and both carry the
    // reason.
    let missing_spans = in_trace(&missing_trace);
    let name = "rapport.contacts.v1.ContactsService/GetContact";
    let service_span = one(&missing_spans, "contacts server span", |span| {
        span.service == "rapport-contacts" && span.span.name == name
    });
    assert_eq!(
        service_span.attribute("rpc.grpc.status_code").as_deref(),
        Some("5")
    );
    assert_eq!(
        service_span.attribute("rapport.error.reason").as_deref(),
        Some("CONTACT_NOT_FOUND")
    );
    assert_ne!(
        service_span.span.status.as_ref().map(|s| s.code),
        Some(ERROR)
    );
    let hop = one(&missing_spans, "gateway client span", |span| {
        span.service == "rapport-gateway" && span.span.kind == 3
    });
    assert_eq!(hop.span.status.as_ref().map(|s| s.code), Some(ERROR));

    // The wrong key: a new trace at the gateway, linked to the client's,
    // with the refusal's reason; nothing forwarded.
    assert!(
        in_trace(&refused_trace).is_empty(),
        "a refused caller's trace is not continued"
    );
    let refusal = one(&spans, "refused call span", |span| {
        span.service == "rapport-gateway"
            && span
                .span
                .links
                .iter()
                .any(|link| hex(&link.trace_id) == refused_trace.trace_id)
    });
    assert!(refusal.parent_span_id().is_empty(), "a root span");
    assert_eq!(
        refusal.attribute("rpc.grpc.status_code").as_deref(),
        Some("16")
    );
    assert_eq!(
        refusal.attribute("rapport.error.reason"),
        Some(reason(&refused))
    );

    assert!(in_trace(&uncredentialed_trace).is_empty());
    let service_refusal = one(&spans, "contacts refusal span", |span| {
        span.service == "rapport-contacts"
            && span
                .span
                .links
                .iter()
                .any(|link| hex(&link.trace_id) == uncredentialed_trace.trace_id)
    });
    assert!(service_refusal.parent_span_id().is_empty(), "a root span");

    // Feedback's apply span is linked to the erasure's call.
    let erase_call = one(
        &in_trace(&erased_trace),
        "contacts EraseContact span",
        |span| span.service == "rapport-contacts" && span.span.kind == 2,
    )
    .clone();
    let apply = spans
        .iter()
        .find(|span| {
            span.service == "rapport-feedback"
                && span.span.name == "process contacts"
                && span
                    .span
                    .links
                    .iter()
                    .any(|link| hex(&link.span_id) == erase_call.span_id())
        })
        .expect("an apply span linked to the EraseContact call span");
    assert_ne!(
        apply.trace_id(),
        erased_trace.trace_id,
        "linked, not a child"
    );

    // Resources name the service, its version and its instance.
    for resource in receiver.resources() {
        for key in ["service.name", "service.version", "service.instance.id"] {
            assert!(
                attribute(&resource.attributes, key).is_some(),
                "{key} in {resource:?}"
            );
        }
    }

    // Request durations per method and status code, on both sides.
    let metrics = receiver.metrics();
    let durations = |service: &str, name: &str| -> Vec<(String, String)> {
        use opentelemetry_proto::tonic::metrics::v1::metric::Data;
        metrics
            .iter()
            .filter(|(exporter, metric)| exporter == service && metric.name == name)
            .filter_map(|(_, metric)| match &metric.data {
                Some(Data::Histogram(histogram)) => Some(histogram.data_points.clone()),
                _ => None,
            })
            .flatten()
            .map(|point| {
                (
                    attribute(&point.attributes, "rpc.method").unwrap_or_default(),
                    attribute(&point.attributes, "rpc.grpc.status_code").unwrap_or_default(),
                )
            })
            .collect()
    };
    let served = durations("rapport-contacts", "rpc.server.call.duration");
    for expected in [
        ("CreateContact", "0"),
        ("GetContact", "5"),
        ("EraseContact", "0"),
    ] {
        assert!(
            served.contains(&(expected.0.to_owned(), expected.1.to_owned())),
            "{expected:?} in {served:?}"
        );
    }
    let forwarded = durations("rapport-gateway", "rpc.client.call.duration");
    assert!(
        forwarded.contains(&("GetContact".to_owned(), "5".to_owned())),
        "{forwarded:?}"
    );
    let metric_names: Vec<&str> = metrics.iter().map(|(_, m)| m.name.as_str()).collect();
    for name in [
        "rapport.rpc.server.active_calls",
        "db.client.connection.count",
        "db.client.connection.max",
        "db.client.connection.wait_time",
        "rapport.rpc.server.refused_calls",
        "rapport.events.consumer.lag",
        "rapport.events.consumer.applied",
        "rapport.outbox.backlog",
    ] {
        assert!(metric_names.contains(&name), "{name} in {metric_names:?}");
    }

    // JSON log lines name their trace: the refusal's line its new trace.
    let gateway_log = std::fs::read_to_string(logs.join("gateway.log")).unwrap();
    let refusal_line = gateway_log
        .lines()
        .find(|line| line.contains("call failed") && line.contains(&refusal.trace_id()))
        .unwrap_or_else(|| panic!("a log line of the refusal in {gateway_log}"));
    let line: serde_json::Value = serde_json::from_str(refusal_line).unwrap();
    assert_eq!(line["trace_id"], refusal.trace_id());
    assert_eq!(line["span_id"], refusal.span_id());

    // No personal data or secret anywhere.
    let mut everything = receiver.everything_as_text();
    for log in ["gateway.log", "contacts.log", "feedback.log"] {
        everything.push_str(&std::fs::read_to_string(logs.join(log)).unwrap());
    }
    let secret = key.secret.split('.').nth(1).unwrap().to_owned();
    let identity = identity_key("gateway");
    let identity_body = identity.lines().nth(1).unwrap().to_owned();
    for canary in [
        EMAIL,
        "telemetry.canary",
        PHONE,
        FIRST_NAME,
        LAST_NAME,
        &secret,
        STACK_OPERATOR_KEY,
        &identity_body,
        &wrong_key["rk_0123456789ab.".len()..],
    ] {
        assert!(
            !everything.contains(canary),
            "{canary} was exported or logged"
        );
    }
    let _ = std::fs::remove_dir_all(&logs);
}
