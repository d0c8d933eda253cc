//! What every Rapport server (the gateway and each service) does with the
//! connections it accepts: a cap on how many are open, an idle timeout that
//! spares connections with a call in flight, and an end to connections
//! whose peer makes the server reset stream after stream ("MadeYouReset",
//! CVE-2025-8671). The HTTP/2 frames are written by hand, as an attacker's
//! would be.

use std::time::Duration;

use futures::StreamExt as _;
use rapport_core::credential::{Access, Grant, Scope};
use rapport_e2e::Suite;
use rapport_proto::contacts::v1::contacts_service_client::ContactsServiceClient;
use rapport_proto::contacts::v1::{Contact, CreateContactRequest};
use rapport_proto::events::v1::SubscribeRequest;
use rapport_proto::events::v1::event_feed_service_client::EventFeedServiceClient;
use rapport_testkit::{TestDatabase, TestServer};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use uuid::Uuid;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const END_HEADERS: u8 = 0x4;
const ACK: u8 = 0x1;
const ENHANCE_YOUR_CALM: u32 = 0xb;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let length = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut frame = length[1..].to_vec();
    frame.extend_from_slice(&[kind, flags]);
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// The header block of a health check (HPACK: indexed `:method POST` and
/// `:scheme http`, literal `:path`, `:authority` and `content-type`).
fn health_check_headers() -> Vec<u8> {
    let literal = |index: &[u8], value: &str| {
        let mut field = index.to_vec();
        field.push(u8::try_from(value.len()).unwrap());
        field.extend_from_slice(value.as_bytes());
        field
    };
    let mut block = vec![0x83, 0x86];
    block.extend(literal(&[0x04], "/grpc.health.v1.Health/Check"));
    block.extend(literal(&[0x01], "localhost"));
    block.extend(literal(&[0x0f, 0x10], "application/grpc"));
    block
}

/// Reads one frame: its type, flags and payload.
async fn read_frame(stream: &mut TcpStream) -> std::io::Result<(u8, u8, Vec<u8>)> {
    let mut head = [0; 9];
    stream.read_exact(&mut head).await?;
    let length = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let mut payload = vec![0; length];
    stream.read_exact(&mut payload).await?;
    Ok((head[3], head[4], payload))
}

/// Opens streams on `addr` and makes the server reset each (a window
/// update that overflows the stream's window is the peer's error), and
/// returns the error code of the GOAWAY that ends the connection, if one
/// comes within `within`.
async fn goaway_after_resets(
    addr: std::net::SocketAddr,
    streams: u32,
    within: Duration,
) -> Option<u32> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(PREFACE).await.unwrap();
    stream.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
    // The server's SETTINGS come first; acknowledge them.
    let (kind, _, _) = read_frame(&mut stream).await.unwrap();
    assert_eq!(kind, SETTINGS);
    stream
        .write_all(&frame(SETTINGS, ACK, 0, &[]))
        .await
        .unwrap();
    let headers = health_check_headers();
    let mut burst = Vec::new();
    for n in 0..streams {
        let id = 2 * n + 1;
        burst.extend(frame(HEADERS, END_HEADERS, id, &headers));
        burst.extend(frame(WINDOW_UPDATE, 0, id, &0x7fff_ffffu32.to_be_bytes()));
    }
    // The server may end the connection before it has read everything.
    let _ = stream.write_all(&burst).await;
    tokio::time::timeout(within, async {
        loop {
            match read_frame(&mut stream).await {
                Ok((GOAWAY, _, payload)) => {
                    return Some(u32::from_be_bytes(payload[4..8].try_into().unwrap()));
                }
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    })
    .await
    .ok()
    .flatten()
}

#[tokio::test]
async fn a_peer_that_makes_the_server_reset_stream_after_stream_is_sent_away() {
    let suite = Suite::start().await;
    for (name, addr) in [
        ("gateway", suite.gateway.addr),
        ("contacts", suite.contacts.addr),
    ] {
        assert_eq!(
            goaway_after_resets(addr, 1100, Duration::from_secs(10)).await,
            Some(ENHANCE_YOUR_CALM),
            "the {name} server ends the connection after its cap of local resets"
        );
        // A few resets are an ordinary client's mistakes, not an attack.
        assert_eq!(
            goaway_after_resets(addr, 10, Duration::from_secs(1)).await,
            None,
            "{name}"
        );
    }
}

/// Whether the server closed `stream` (end of stream or a reset) within
/// `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buffer = [0; 1024];
    tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_and_idle_ones_are_let_go() {
    let db = TestDatabase::create().await;
    let config = rapport_testkit::config(
        &rapport_contacts::SERVICE,
        &db,
        &["--max-connections", "2", "--connection-idle-ms", "1000"],
    );
    let server = TestServer::start(&rapport_contacts::SERVICE, move |listener, shutdown| {
        rapport_contacts::serve(config, listener, shutdown)
    })
    .await;
    // With the test server's own connection (if it is still open) and
    // `first`, or with `first` and `second`, the cap is reached: `third`
    // is closed as soon as it is accepted, `first` is not.
    let mut first = TcpStream::connect(server.addr).await.unwrap();
    let mut second = TcpStream::connect(server.addr).await.unwrap();
    let mut third = TcpStream::connect(server.addr).await.unwrap();
    assert!(
        closed_within(&mut third, Duration::from_millis(300)).await,
        "a connection over the cap is closed at once"
    );
    assert!(!closed_within(&mut first, Duration::from_millis(300)).await);

    // Connections that carry no call are let go after the idle timeout.
    assert!(closed_within(&mut first, Duration::from_secs(3)).await);
    assert!(closed_within(&mut second, Duration::from_secs(3)).await);

    // A call in flight keeps its connection past the idle timeout: a feed
    // subscription on a connection of its own outlives it and delivers.
    let feed = tonic::transport::Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect_lazy();
    let consumer = Grant {
        tenant_id: None,
        principal: "consumer:test".to_owned(),
        scopes: vec![Scope::new("contacts", Access::Read)],
    };
    let mut events = EventFeedServiceClient::new(server.credentialed(
        feed,
        rapport_testkit::identity("consumer"),
        &consumer,
    ))
    .subscribe(SubscribeRequest::default())
    .await
    .expect("a subscription")
    .into_inner();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    ContactsServiceClient::new(server.tenant_channel(Uuid::now_v7()))
        .create_contact(CreateContactRequest {
            request_id: "idle".to_owned(),
            contact: Some(Contact {
                email: "idle@example.com".to_owned(),
                ..Default::default()
            }),
        })
        .await
        .expect("a new connection is served once the idle ones are gone");
    let delivered = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .expect("the subscription is still open")
        .expect("an event")
        .expect("not an error");
    assert_eq!(delivered.event.unwrap().r#type, "contact.created");
}
