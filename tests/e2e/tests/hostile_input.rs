//! Hostile input costs bounded memory: a few kilobytes of gzip that unpack
//! into millions of empty entries are refused before they are decoded,
//! with a clear error, keyless or not. The services run as processes, so
//! their resident memory is measured as deployed.

use std::io::Write as _;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rapport_e2e::{create_tenant, keyed_client, named};
use rapport_testkit::TestDatabase;
use rapport_testkit::process::{ProcessStack, STACK_OPERATOR_KEY, ServiceProcess};
use tonic::Code;

/// How much a service's resident memory may grow while refusing one
/// hostile request.
const MAX_GROWTH_KIB: u64 = 20 * 1024;

/// `field` repeated `count` times as an empty entry (tag, length 0): 8 MiB
/// of entries for four million, each a whole struct once decoded.
fn empty_entries(field: u8, count: usize, prefix: &[u8]) -> Vec<u8> {
    let mut message = prefix.to_vec();
    message.reserve(count * 2);
    for _ in 0..count {
        message.extend_from_slice(&[(field << 3) | 2, 0]);
    }
    message
}

/// A gzip-compressed gRPC frame of `message`.
fn gzip_frame(message: &[u8]) -> Bytes {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(message).unwrap();
    let compressed = encoder.finish().unwrap();
    let mut frame = vec![1];
    frame.extend_from_slice(&u32::try_from(compressed.len()).unwrap().to_be_bytes());
    frame.extend_from_slice(&compressed);
    Bytes::from(frame)
}

/// Calls `path` on `gateway` with `frame` as the body, as any HTTP/2
/// client could, and returns the gRPC status it ends with.
async fn raw_call(
    gateway: &ServiceProcess,
    path: &str,
    key: Option<&str>,
    frame: Bytes,
) -> tonic::Status {
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let mut request = http::Request::post(format!("http://{}{path}", gateway.addr))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-encoding", "gzip");
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    let response = client
        .request(request.body(Full::new(frame)).unwrap())
        .await
        .expect("the gateway answers");
    let headers = response.headers().clone();
    let collected = response.into_body().collect().await.expect("a body");
    let trailers = collected.trailers().cloned().unwrap_or_default();
    tonic::Status::from_header_map(&trailers)
        .or_else(|| tonic::Status::from_header_map(&headers))
        .expect("a gRPC status")
}

fn rss_kib(process: &ServiceProcess) -> u64 {
    process.rss_kib().expect("the service runs")
}

#[tokio::test]
async fn hostile_gzip_is_refused_before_it_is_decoded() {
    let stack = ProcessStack::start(TestDatabase::create().await, &[])
        .await
        .unwrap();
    let operator = keyed_client(stack.gateway.channel.clone(), STACK_OPERATOR_KEY);
    let key = create_tenant(&operator, named("hostile"), &["*:write"]).await;

    // Keyless: a survey answer with four million empty answers.
    let token = format!("fbi_{}", "x".repeat(43));
    let mut prefix = vec![0x0a, u8::try_from(token.len()).unwrap()];
    prefix.extend_from_slice(token.as_bytes());
    let frame = gzip_frame(&empty_entries(2, (4 << 20) - 64, &prefix));
    assert!(frame.len() < 64 * 1024, "{} bytes on the wire", frame.len());
    let before = rss_kib(&stack.feedback);
    let status = raw_call(
        &stack.gateway,
        "/rapport.feedback.v1.FeedbackService/SubmitResponse",
        None,
        frame,
    )
    .await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(rapport_testkit::reason(&status), "REQUEST_TOO_LARGE");
    assert_eq!(rapport_testkit::violated_fields(&status), ["answers"]);
    let grown = rss_kib(&stack.feedback).saturating_sub(before);
    assert!(grown < MAX_GROWTH_KIB, "feedback grew by {grown} KiB");

    // With a key: a batch of four million empty contacts.
    let frame = gzip_frame(&empty_entries(1, (4 << 20) - 64, &[]));
    let before = rss_kib(&stack.contacts);
    let status = raw_call(
        &stack.gateway,
        "/rapport.contacts.v1.ContactsService/BatchUpsertContacts",
        Some(&key.secret),
        frame,
    )
    .await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(rapport_testkit::reason(&status), "REQUEST_TOO_LARGE");
    assert_eq!(rapport_testkit::violated_fields(&status), ["contacts"]);
    let grown = rss_kib(&stack.contacts).saturating_sub(before);
    assert!(grown < MAX_GROWTH_KIB, "contacts grew by {grown} KiB");

    // Past the public limit in bytes, before anything is decompressed.
    let frame = Bytes::from(vec![0; 128 * 1024]);
    let status = raw_call(
        &stack.gateway,
        "/rapport.feedback.v1.FeedbackService/SubmitResponse",
        None,
        frame,
    )
    .await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(rapport_testkit::reason(&status), "REQUEST_TOO_LARGE");
}
