//! Plain-HTTP routes at the gateway: a path prefix reaches the service the
//! route table names (here a real HTTP server on loopback), with a
//! credential signed for it and the gateway's public address; keyed routes
//! want an API key, public ones are limited per client address like public
//! gRPC calls; a path nothing claims is 404.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rapport_core::credential::{CREDENTIAL_HEADER, Grant, Verifier};
use rapport_e2e::{Suite, named};
use tokio::net::TcpListener;

/// What the page service saw of each request.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    host: String,
    proto: String,
    grant: Option<Grant>,
}

/// A page service on loopback: answers every path with its own, and
/// records what the gateway sent, its credential verified as a service
/// named `pages` would.
async fn page_service() -> (String, Arc<Mutex<Vec<Seen>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let trust = rapport_testkit::trusted_issuers().parse().unwrap();
    let verifier = Arc::new(Verifier::new("pages", &trust));
    let recorded = seen.clone();
    let app = axum::Router::new().fallback(move |request: http::Request<axum::body::Body>| {
        let (recorded, verifier) = (recorded.clone(), verifier.clone());
        async move {
            let header = |name: &str| {
                request
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned()
            };
            let path = request
                .uri()
                .path_and_query()
                .map(ToString::to_string)
                .unwrap_or_default();
            recorded.lock().unwrap().push(Seen {
                path: path.clone(),
                host: header("x-forwarded-host"),
                proto: header("x-forwarded-proto"),
                grant: verifier
                    .verify(&header(CREDENTIAL_HEADER))
                    .ok()
                    .map(|grant| (*grant).clone()),
            });
            format!("page {path}")
        }
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

/// GETs `path` from the gateway over HTTP/1.1, as a browser would: the
/// status, `Retry-After` and body.
async fn get(suite: &Suite, path: &str, key: Option<&str>) -> (u16, Option<String>, String) {
    let client: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let mut request = http::Request::get(format!("http://{}{path}", suite.gateway.addr));
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    let response = client
        .request(request.body(Empty::new()).unwrap())
        .await
        .expect("the gateway answers");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        retry_after,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

#[tokio::test]
async fn plain_http_routes_reach_their_service_and_nothing_else_does() {
    let (pages, seen) = page_service().await;
    let suite = Suite::start_with(move |config| {
        config.service.upstreams.push(("pages".into(), pages));
        config.service.http_routes = vec![
            "/p/=pages:public".parse().unwrap(),
            "/k/=pages:keyed".parse().unwrap(),
        ];
        config.common.public_base_url = Some("https://cx.example.com".parse().unwrap());
        config.service.public_rate_per_second = 1;
        config.service.public_rate_burst = 3;
    })
    .await;

    // A public route: the page, with the public address and a credential
    // for the page service that names no tenant.
    let (status, _, body) = get(&suite, "/p/hello?lang=en", None).await;
    assert_eq!((status, body.as_str()), (200, "page /p/hello?lang=en"));
    let first = seen.lock().unwrap()[0].clone();
    assert_eq!(first.path, "/p/hello?lang=en");
    assert_eq!(
        (first.host.as_str(), first.proto.as_str()),
        ("cx.example.com", "https")
    );
    let grant = first.grant.expect("a credential the page service verifies");
    assert_eq!(
        (grant.tenant_id, grant.principal.as_str()),
        (None, "public")
    );

    // Limited per client address like public gRPC calls.
    for _ in 0..2 {
        assert_eq!(get(&suite, "/p/again", None).await.0, 200);
    }
    let (status, retry_after, _) = get(&suite, "/p/again", None).await;
    assert_eq!(status, 429);
    assert!(retry_after.is_some(), "a 429 says when to come back");

    // A keyed route wants a key, and then acts for its tenant.
    let (status, _, _) = get(&suite, "/k/report", None).await;
    assert_eq!(status, 401);
    let key = suite.tenant(named("pages"), &["pages:read"]).await;
    let (status, _, body) = get(&suite, "/k/report", Some(&key.secret)).await;
    assert_eq!((status, body.as_str()), (200, "page /k/report"));
    let grant = seen.lock().unwrap().last().unwrap().grant.clone().unwrap();
    assert_eq!(grant.tenant_id.unwrap().to_string(), key.tenant_id);
    let other = suite.tenant(named("no pages"), &["contacts:read"]).await;
    assert_eq!(get(&suite, "/k/report", Some(&other.secret)).await.0, 403);

    // Nothing claims this path.
    let (status, _, _) = get(&suite, "/nowhere", None).await;
    assert_eq!(status, 404);
    assert_eq!(
        seen.lock().unwrap().len(),
        4,
        "only routed requests reach the service"
    );
}
