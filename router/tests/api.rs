//! The IPAM HTTP API in-process: the request shapes the `weave` script and the Go client send, and
//! the exact bodies and status codes they expect back.

use std::collections::HashSet;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt as _;
use router::http_api::{self, ApiState, AssumeAlive, BoxFuture, Liveness};
use router::ipam::Allocator;
use router::store::Store;
use tempfile::TempDir;
use tower::ServiceExt as _;

const FORM: &str = "application/x-www-form-urlencoded";

struct Reply {
    status: StatusCode,
    content_type: Option<String>,
    body: String,
}

/// A router over a fresh allocator for `range`, saving under a temporary data directory.
fn app_with(range: &str, default_subnet: &str, liveness: Arc<dyn Liveness>) -> (Router, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let alloc = Allocator::new(range.parse().unwrap(), default_subnet.parse().unwrap()).unwrap();
    let state = ApiState::ready(alloc, Store::new(dir.path()), liveness);
    (http_api::router(state), dir)
}

fn app() -> (Router, TempDir) {
    app_with("10.32.0.0/12", "10.32.0.0/12", Arc::new(AssumeAlive))
}

/// One request; `form` goes in the body with the form content type, as curl `-d` and the Go client send it.
async fn call(app: &Router, method: Method, uri: &str, form: Option<&str>) -> Reply {
    let builder = Request::builder().method(method).uri(uri);
    let request = match form {
        Some(body) => builder
            .header(header::CONTENT_TYPE, FORM)
            .body(Body::from(body.to_owned())),
        None => builder.body(Body::empty()),
    }
    .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        content_type,
        body: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

async fn expect(
    app: &Router,
    method: Method,
    uri: &str,
    form: Option<&str>,
    status: u16,
    body: &str,
) {
    let reply = call(app, method.clone(), uri, form).await;
    assert_eq!(
        (reply.status.as_u16(), reply.body.as_str()),
        (status, body),
        "{method} {uri} {form:?}"
    );
}

#[tokio::test]
async fn allocate_in_the_default_subnet_is_lowest_first_and_idempotent() {
    let (app, _dir) = app();
    // curl -X POST -d check-alive=true http://127.0.0.1:6784/ip/<id>
    expect(
        &app,
        Method::POST,
        "/ip/c1",
        Some("check-alive=true"),
        200,
        "10.32.0.1/12",
    )
    .await;
    expect(
        &app,
        Method::POST,
        "/ip/c2",
        Some("check-alive=true"),
        200,
        "10.32.0.2/12",
    )
    .await;
    expect(
        &app,
        Method::POST,
        "/ip/c1",
        Some("check-alive=true"),
        200,
        "10.32.0.1/12",
    )
    .await;
    // Without a body and with the flag in the query, as older clients send it.
    expect(&app, Method::POST, "/ip/c3", None, 200, "10.32.0.3/12").await;
    expect(
        &app,
        Method::POST,
        "/ip/c4?check-alive=true",
        None,
        200,
        "10.32.0.4/12",
    )
    .await;
    let reply = call(&app, Method::POST, "/ip/c5", Some("check-alive=true")).await;
    assert_eq!(
        reply.content_type.as_deref(),
        Some("text/plain; charset=utf-8")
    );

    expect(&app, Method::DELETE, "/ip/c2", None, 204, "").await;
    expect(
        &app,
        Method::POST,
        "/ip/c6",
        Some("check-alive=true"),
        200,
        "10.32.0.2/12",
    )
    .await;
}

#[tokio::test]
async fn allocate_in_a_named_subnet() {
    let (app, _dir) = app();
    expect(
        &app,
        Method::POST,
        "/ip/c1/10.40.0.0/24",
        Some("check-alive=true"),
        200,
        "10.40.0.1/24",
    )
    .await;
    expect(
        &app,
        Method::POST,
        "/ip/c1/10.40.0.0/24",
        Some("check-alive=true"),
        200,
        "10.40.0.1/24",
    )
    .await;
    expect(
        &app,
        Method::GET,
        "/ip/c1/10.40.0.0/24",
        None,
        200,
        "10.40.0.1/24",
    )
    .await;
    // The default subnet (the whole range) contains that address, so the id keeps it, reported
    // with the default subnet's prefix, as the original's range lookup does.
    expect(
        &app,
        Method::POST,
        "/ip/c1",
        Some("check-alive=true"),
        200,
        "10.40.0.1/12",
    )
    .await;
    expect(&app, Method::GET, "/ip/c1", None, 200, "10.40.0.1/24").await;
    expect(
        &app,
        Method::POST,
        "/ip/c1/10.40.0.1/24",
        None,
        400,
        "invalid subnet - bits after network prefix are not all zero: 10.40.0.1/24\n",
    )
    .await;
    expect(
        &app,
        Method::POST,
        "/ip/c1/10.40.0.0/31",
        None,
        400,
        "invalid subnet - smaller than minimum size 4: 10.40.0.0/31\n",
    )
    .await;
    expect(
        &app,
        Method::POST,
        "/ip/c1/10.2.0.0/24",
        None,
        400,
        "range 10.2.0.0/24 out of bounds: 10.32.0.0/12\n",
    )
    .await;
    expect(
        &app,
        Method::POST,
        "/ip/c1/banana/24",
        None,
        400,
        "invalid CIDR address: banana/24\n",
    )
    .await;
    expect(
        &app,
        Method::GET,
        "/ip/c1/10.40.0.1/24",
        None,
        400,
        "invalid subnet - bits after network prefix are not all zero: 10.40.0.1/24\n",
    )
    .await;
}

#[tokio::test]
async fn exhausted_subnet_is_a_400_naming_the_subnet() {
    let (app, _dir) = app();
    for id in ["a", "b"] {
        let reply = call(
            &app,
            Method::POST,
            &format!("/ip/{id}/10.44.0.0/30"),
            Some("check-alive=true"),
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK, "{id}: {}", reply.body);
    }
    let reply = call(
        &app,
        Method::POST,
        "/ip/c/10.44.0.0/30",
        Some("check-alive=true"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        reply.body,
        "no free address in 10.44.0.0/30: all 2 host addresses are allocated\n"
    );
    // The same id asking again still gets its address even though the subnet is full.
    expect(
        &app,
        Method::POST,
        "/ip/a/10.44.0.0/30",
        None,
        200,
        "10.44.0.1/30",
    )
    .await;
    expect(&app, Method::DELETE, "/ip/b/10.44.0.2", None, 204, "").await;
    expect(
        &app,
        Method::POST,
        "/ip/c/10.44.0.0/30",
        None,
        200,
        "10.44.0.2/30",
    )
    .await;
}

#[tokio::test]
async fn claims_answer_204_and_conflicts_name_the_owner() {
    let (app, _dir) = app();
    // The Go client sends PUT parameters in a form body too.
    expect(
        &app,
        Method::PUT,
        "/ip/c1/10.32.0.7/12",
        Some("check-alive=true"),
        204,
        "",
    )
    .await;
    expect(
        &app,
        Method::PUT,
        "/ip/c1/10.32.0.7/12",
        Some("check-alive=true"),
        204,
        "",
    )
    .await;
    expect(
        &app,
        Method::PUT,
        "/ip/c2/10.32.0.7/12",
        Some("check-alive=true"),
        400,
        "Unable to claim: address 10.32.0.7/12 is already owned by c1\n",
    )
    .await;
    // Outside the range: recorded and reported under its own mask.
    expect(
        &app,
        Method::PUT,
        "/ip/c2/10.2.1.1/24?check-alive=true",
        None,
        204,
        "",
    )
    .await;
    expect(
        &app,
        Method::GET,
        "/ip/c2/10.2.1.0/24",
        None,
        200,
        "10.2.1.1/24",
    )
    .await;
    expect(
        &app,
        Method::PUT,
        "/ip/c3/10.2.1.1/24",
        Some("check-alive=true&noErrorOnUnknown=true"),
        400,
        "Unable to claim: address 10.2.1.1/24 already in use by c2\n",
    )
    .await;
    expect(
        &app,
        Method::PUT,
        "/ip/c3/10.2.1.1/33",
        None,
        400,
        "invalid CIDR address: 10.2.1.1/33\n",
    )
    .await;
    // Allocation skips the claimed address.
    for n in 1..=6 {
        let reply = call(&app, Method::POST, &format!("/ip/x{n}"), None).await;
        assert_eq!(reply.body, format!("10.32.0.{n}/12"));
    }
    expect(&app, Method::POST, "/ip/x7", None, 200, "10.32.0.8/12").await;
    // `_`: stored under the address itself, so `DELETE /ip/<ip>` frees it.
    expect(&app, Method::PUT, "/ip/_/10.32.0.20/12", None, 204, "").await;
    expect(
        &app,
        Method::GET,
        "/ip/10.32.0.20",
        None,
        200,
        "10.32.0.20/12",
    )
    .await;
    expect(
        &app,
        Method::PUT,
        "/ip/c4/10.32.0.20/12",
        None,
        400,
        "Unable to claim: address 10.32.0.20/12 already in use\n",
    )
    .await;
    expect(&app, Method::DELETE, "/ip/10.32.0.20", None, 204, "").await;
    expect(&app, Method::PUT, "/ip/c4/10.32.0.20/12", None, 204, "").await;
}

#[tokio::test]
async fn lookups_list_and_deletes() {
    let (app, _dir) = app();
    expect(&app, Method::GET, "/ip", None, 200, "{\"owned\":null}\n").await;
    // Unknown id: 200 with an empty body, never 404.
    expect(&app, Method::GET, "/ip/nobody", None, 200, "").await;

    expect(
        &app,
        Method::POST,
        "/ip/c1",
        Some("check-alive=true"),
        200,
        "10.32.0.1/12",
    )
    .await;
    expect(&app, Method::PUT, "/ip/c1/10.32.0.9/12", None, 204, "").await;
    expect(&app, Method::PUT, "/ip/c1/10.2.1.1/24", None, 204, "").await;
    expect(
        &app,
        Method::POST,
        "/ip/weave:expose",
        None,
        200,
        "10.32.0.2/12",
    )
    .await;
    // Only addresses inside the default subnet, space-separated, in the order given.
    expect(
        &app,
        Method::GET,
        "/ip/c1",
        None,
        200,
        "10.32.0.1/12 10.32.0.9/12",
    )
    .await;

    let reply = call(&app, Method::GET, "/ip", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.content_type.as_deref(), Some("application/json"));
    let json: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"owned": [
            {"containerid": "c1", "addrs": ["10.32.0.1/12", "10.32.0.9/12", "10.2.1.1/24"]},
            {"containerid": "weave:expose", "addrs": ["10.32.0.2/12"]},
        ]})
    );

    expect(&app, Method::DELETE, "/ip/c1/10.32.0.9", None, 204, "").await;
    expect(
        &app,
        Method::DELETE,
        "/ip/c1/10.32.0.9",
        None,
        400,
        "Unable to free: Free: address 10.32.0.9 not found for c1\n",
    )
    .await;
    expect(
        &app,
        Method::DELETE,
        "/ip/c1/nonsense",
        None,
        400,
        "invalid IP address: nonsense\n",
    )
    .await;
    expect(&app, Method::DELETE, "/ip/c1", None, 204, "").await;
    expect(
        &app,
        Method::DELETE,
        "/ip/c1",
        None,
        400,
        "Delete: no addresses for c1\n",
    )
    .await;
    expect(&app, Method::GET, "/ip/c1", None, 200, "").await;
}

#[tokio::test]
async fn default_subnet_status_and_routing_errors() {
    let (app, _dir) = app_with("10.32.0.0/12", "10.32.4.0/24", Arc::new(AssumeAlive));
    expect(
        &app,
        Method::GET,
        "/ipinfo/defaultsubnet",
        None,
        200,
        "10.32.4.0/24",
    )
    .await;
    expect(&app, Method::POST, "/ip/c1", None, 200, "10.32.4.1/24").await;
    let status = call(&app, Method::GET, "/status", None).await;
    assert_eq!(status.status, StatusCode::OK);
    assert!(
        status
            .body
            .contains("        Service: ipam\n         Status: ready\n"),
        "{}",
        status.body
    );
    assert!(
        status
            .body
            .contains("          Range: 10.32.0.0/12\n  DefaultSubnet: 10.32.4.0/24\n"),
        "{}",
        status.body
    );

    assert_eq!(
        call(&app, Method::POST, "/ip", None).await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(
        call(&app, Method::PUT, "/ip/c1", None).await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(
        call(&app, Method::GET, "/nothing/here", None).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn status_is_503_until_ipam_is_initialised() {
    let dir = tempfile::tempdir().unwrap();
    let range = "10.32.0.0/12".parse().unwrap();
    let state = ApiState::new(range, range, Arc::new(AssumeAlive));
    let app = http_api::router(state.clone());

    let status = call(&app, Method::GET, "/status", None).await;
    assert_eq!(status.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        status.body.contains("Status: initialising"),
        "{}",
        status.body
    );
    // Configuration is known already; allocation is not.
    expect(
        &app,
        Method::GET,
        "/ipinfo/defaultsubnet",
        None,
        200,
        "10.32.0.0/12",
    )
    .await;
    expect(
        &app,
        Method::POST,
        "/ip/c1",
        None,
        503,
        "IPAM is not initialised yet\n",
    )
    .await;

    state.set_ready(
        Allocator::new(range, range).unwrap(),
        Store::new(dir.path()),
    );
    assert_eq!(
        call(&app, Method::GET, "/status", None).await.status,
        StatusCode::OK
    );
    expect(&app, Method::POST, "/ip/c1", None, 200, "10.32.0.1/12").await;
}

/// Containers in `dead` are not running; every other id is.
#[derive(Debug)]
struct DeadSet(HashSet<&'static str>);

impl Liveness for DeadSet {
    fn is_alive<'a>(&'a self, id: &'a str) -> BoxFuture<'a, bool> {
        Box::pin(async move { !self.0.contains(id) })
    }
}

#[tokio::test]
async fn check_alive_for_a_stopped_container_is_200_cancelled() {
    let liveness = Arc::new(DeadSet(["dead"].into()));
    let (app, _dir) = app_with("10.32.0.0/12", "10.32.0.0/12", liveness);
    expect(
        &app,
        Method::POST,
        "/ip/dead",
        Some("check-alive=true"),
        200,
        "cancelled",
    )
    .await;
    expect(
        &app,
        Method::POST,
        "/ip/dead/10.40.0.0/24",
        Some("check-alive=true"),
        200,
        "cancelled",
    )
    .await;
    expect(
        &app,
        Method::PUT,
        "/ip/dead/10.32.0.9/12",
        Some("check-alive=true"),
        200,
        "cancelled",
    )
    .await;
    // Nothing was recorded for the cancelled requests.
    expect(&app, Method::GET, "/ip", None, 200, "{\"owned\":null}\n").await;
    // Without check-alive nobody asks whether it runs (weave:expose, weave:extern, `_`).
    expect(&app, Method::POST, "/ip/dead", None, 200, "10.32.0.1/12").await;
    expect(
        &app,
        Method::POST,
        "/ip/alive",
        Some("check-alive=true"),
        200,
        "10.32.0.2/12",
    )
    .await;
    // Only the literal `true` turns the check on, as Go's FormValue comparison does.
    expect(
        &app,
        Method::POST,
        "/ip/dead/10.40.0.0/24",
        Some("check-alive=1"),
        200,
        "10.40.0.1/24",
    )
    .await;
}

#[tokio::test]
async fn allocations_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let range = "10.32.0.0/12".parse().unwrap();
    let start = || {
        let store = Store::new(dir.path());
        let alloc = store.load(Allocator::new(range, range).unwrap()).unwrap();
        http_api::router(ApiState::ready(alloc, store, Arc::new(AssumeAlive)))
    };

    let first = start();
    expect(
        &first,
        Method::POST,
        "/ip/c1",
        Some("check-alive=true"),
        200,
        "10.32.0.1/12",
    )
    .await;
    expect(
        &first,
        Method::POST,
        "/ip/c2",
        Some("check-alive=true"),
        200,
        "10.32.0.2/12",
    )
    .await;
    expect(&first, Method::PUT, "/ip/c3/10.2.1.1/24", None, 204, "").await;
    expect(&first, Method::DELETE, "/ip/c1", None, 204, "").await;
    let before = call(&first, Method::GET, "/ip", None).await.body;
    drop(first);

    let second = start();
    assert_eq!(call(&second, Method::GET, "/ip", None).await.body, before);
    // The same container gets its old address back, and the freed one is reused first.
    expect(
        &second,
        Method::POST,
        "/ip/c2",
        Some("check-alive=true"),
        200,
        "10.32.0.2/12",
    )
    .await;
    expect(
        &second,
        Method::POST,
        "/ip/c4",
        Some("check-alive=true"),
        200,
        "10.32.0.1/12",
    )
    .await;
    expect(
        &second,
        Method::GET,
        "/ip/c3/10.2.1.0/24",
        None,
        200,
        "10.2.1.1/24",
    )
    .await;
}
