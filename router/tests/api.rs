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

/// One row of a request table: method, path, form body (`None`: no body at all), then the status
/// and exact body the client expects back.
type Step<'a> = (Method, &'a str, Option<&'a str>, u16, &'a str);

// Short names so each table row fits on one line.
const GET: Method = Method::GET;
const POST: Method = Method::POST;
const PUT: Method = Method::PUT;
const DELETE: Method = Method::DELETE;
/// The form body `weave` (curl `-d check-alive=true`) and the Go client send for container ids.
const ALIVE: Option<&str> = Some("check-alive=true");

/// Runs the steps in order against the same router; a failing row names its request.
async fn expect_all(app: &Router, steps: &[Step<'_>]) {
    for (i, (method, uri, form, status, body)) in steps.iter().enumerate() {
        let reply = call(app, method.clone(), uri, *form).await;
        assert_eq!(
            (reply.status.as_u16(), reply.body.as_str()),
            (*status, *body),
            "step {i}: {method} {uri} {form:?}"
        );
    }
}

#[tokio::test]
async fn allocate_in_the_default_subnet_is_lowest_first_and_idempotent() {
    let (app, _dir) = app();
    expect_all(
        &app,
        &[
            // curl -X POST -d check-alive=true http://127.0.0.1:6784/ip/<id>
            (POST, "/ip/c1", ALIVE, 200, "10.32.0.1/12"),
            (POST, "/ip/c2", ALIVE, 200, "10.32.0.2/12"),
            (POST, "/ip/c1", ALIVE, 200, "10.32.0.1/12"),
            // Without a body and with the flag in the query, as older clients send it.
            (POST, "/ip/c3", None, 200, "10.32.0.3/12"),
            (POST, "/ip/c4?check-alive=true", None, 200, "10.32.0.4/12"),
        ],
    )
    .await;
    let reply = call(&app, POST, "/ip/c5", ALIVE).await;
    assert_eq!(
        reply.content_type.as_deref(),
        Some("text/plain; charset=utf-8")
    );

    // A freed address is the lowest free one again, so it is handed out next.
    expect_all(
        &app,
        &[
            (DELETE, "/ip/c2", None, 204, ""),
            (POST, "/ip/c6", ALIVE, 200, "10.32.0.2/12"),
        ],
    )
    .await;
}

#[tokio::test]
async fn allocate_in_a_named_subnet() {
    let (app, _dir) = app();
    let not_zero = "invalid subnet - bits after network prefix are not all zero: 10.40.0.1/24\n";
    let too_small = "invalid subnet - smaller than minimum size 4: 10.40.0.0/31\n";
    let out_of_bounds = "range 10.2.0.0/24 out of bounds: 10.32.0.0/12\n";
    let not_cidr = "invalid CIDR address: banana/24\n";
    expect_all(
        &app,
        &[
            (POST, "/ip/c1/10.40.0.0/24", ALIVE, 200, "10.40.0.1/24"),
            (POST, "/ip/c1/10.40.0.0/24", ALIVE, 200, "10.40.0.1/24"),
            (GET, "/ip/c1/10.40.0.0/24", None, 200, "10.40.0.1/24"),
            // The default subnet (the whole range) contains that address, so the id keeps it,
            // reported with the default subnet's prefix, as the original's range lookup does.
            (POST, "/ip/c1", ALIVE, 200, "10.40.0.1/12"),
            (GET, "/ip/c1", None, 200, "10.40.0.1/24"),
            // Malformed, too small and out-of-range subnets: 400, the reason as the body.
            (POST, "/ip/c1/10.40.0.1/24", None, 400, not_zero),
            (POST, "/ip/c1/10.40.0.0/31", None, 400, too_small),
            (POST, "/ip/c1/10.2.0.0/24", None, 400, out_of_bounds),
            (POST, "/ip/c1/banana/24", None, 400, not_cidr),
            (GET, "/ip/c1/10.40.0.1/24", None, 400, not_zero),
        ],
    )
    .await;
}

#[tokio::test]
async fn exhausted_subnet_is_a_400_naming_the_subnet() {
    let (app, _dir) = app();
    for id in ["a", "b"] {
        let reply = call(&app, POST, &format!("/ip/{id}/10.44.0.0/30"), ALIVE).await;
        assert_eq!(reply.status, StatusCode::OK, "{id}: {}", reply.body);
    }
    let reply = call(&app, POST, "/ip/c/10.44.0.0/30", ALIVE).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        reply.body,
        "no free address in 10.44.0.0/30: all 2 host addresses are allocated\n"
    );
    expect_all(
        &app,
        &[
            // The same id asking again still gets its address even though the subnet is full.
            (POST, "/ip/a/10.44.0.0/30", None, 200, "10.44.0.1/30"),
            // Freeing one makes room for the id that was refused.
            (DELETE, "/ip/b/10.44.0.2", None, 204, ""),
            (POST, "/ip/c/10.44.0.0/30", None, 200, "10.44.0.2/30"),
        ],
    )
    .await;
}

#[tokio::test]
async fn claims_answer_204_and_conflicts_name_the_owner() {
    let (app, _dir) = app();
    let owned_by_c1 = "Unable to claim: address 10.32.0.7/12 is already owned by c1\n";
    let unknown_ok = Some("check-alive=true&noErrorOnUnknown=true");
    let used_by_c2 = "Unable to claim: address 10.2.1.1/24 already in use by c2\n";
    let bad_prefix = "invalid CIDR address: 10.2.1.1/33\n";
    expect_all(
        &app,
        &[
            // The Go client sends PUT parameters in a form body too.
            (PUT, "/ip/c1/10.32.0.7/12", ALIVE, 204, ""),
            (PUT, "/ip/c1/10.32.0.7/12", ALIVE, 204, ""),
            (PUT, "/ip/c2/10.32.0.7/12", ALIVE, 400, owned_by_c1),
            // Outside the range: recorded and reported under its own mask.
            (PUT, "/ip/c2/10.2.1.1/24?check-alive=true", None, 204, ""),
            (GET, "/ip/c2/10.2.1.0/24", None, 200, "10.2.1.1/24"),
            (PUT, "/ip/c3/10.2.1.1/24", unknown_ok, 400, used_by_c2),
            (PUT, "/ip/c3/10.2.1.1/33", None, 400, bad_prefix),
        ],
    )
    .await;
    // Allocation skips the claimed address.
    for n in 1..=6 {
        let reply = call(&app, POST, &format!("/ip/x{n}"), None).await;
        assert_eq!(reply.body, format!("10.32.0.{n}/12"));
    }
    let in_use = "Unable to claim: address 10.32.0.20/12 already in use\n";
    expect_all(
        &app,
        &[
            (POST, "/ip/x7", None, 200, "10.32.0.8/12"),
            // `_`: stored under the address itself, so `DELETE /ip/<ip>` frees it.
            (PUT, "/ip/_/10.32.0.20/12", None, 204, ""),
            (GET, "/ip/10.32.0.20", None, 200, "10.32.0.20/12"),
            (PUT, "/ip/c4/10.32.0.20/12", None, 400, in_use),
            (DELETE, "/ip/10.32.0.20", None, 204, ""),
            (PUT, "/ip/c4/10.32.0.20/12", None, 204, ""),
        ],
    )
    .await;
}

#[tokio::test]
async fn lookups_list_and_deletes() {
    let (app, _dir) = app();
    expect_all(
        &app,
        &[
            (GET, "/ip", None, 200, "{\"owned\":null}\n"),
            // Unknown id: 200 with an empty body, never 404.
            (GET, "/ip/nobody", None, 200, ""),
            (POST, "/ip/c1", ALIVE, 200, "10.32.0.1/12"),
            (PUT, "/ip/c1/10.32.0.9/12", None, 204, ""),
            (PUT, "/ip/c1/10.2.1.1/24", None, 204, ""),
            (POST, "/ip/weave:expose", None, 200, "10.32.0.2/12"),
            // Only addresses inside the default subnet, space-separated, in the order given.
            (GET, "/ip/c1", None, 200, "10.32.0.1/12 10.32.0.9/12"),
        ],
    )
    .await;

    // The listing is JSON and, unlike the single lookup, includes addresses outside the range.
    let reply = call(&app, GET, "/ip", None).await;
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

    let not_found = "Unable to free: Free: address 10.32.0.9 not found for c1\n";
    let not_an_ip = "invalid IP address: nonsense\n";
    // Freeing what is not there is a 400, for one address and for the whole id alike.
    expect_all(
        &app,
        &[
            (DELETE, "/ip/c1/10.32.0.9", None, 204, ""),
            (DELETE, "/ip/c1/10.32.0.9", None, 400, not_found),
            (DELETE, "/ip/c1/nonsense", None, 400, not_an_ip),
            (DELETE, "/ip/c1", None, 204, ""),
            (DELETE, "/ip/c1", None, 400, "Delete: no addresses for c1\n"),
            (GET, "/ip/c1", None, 200, ""),
        ],
    )
    .await;
}

#[tokio::test]
async fn default_subnet_status_and_routing_errors() {
    let (app, _dir) = app_with("10.32.0.0/12", "10.32.4.0/24", Arc::new(AssumeAlive));
    expect_all(
        &app,
        &[
            (GET, "/ipinfo/defaultsubnet", None, 200, "10.32.4.0/24"),
            (POST, "/ip/c1", None, 200, "10.32.4.1/24"),
        ],
    )
    .await;
    let status = call(&app, GET, "/status", None).await;
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
        call(&app, POST, "/ip", None).await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(
        call(&app, PUT, "/ip/c1", None).await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(
        call(&app, GET, "/nothing/here", None).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn status_is_503_until_ipam_is_initialised() {
    let dir = tempfile::tempdir().unwrap();
    let range = "10.32.0.0/12".parse().unwrap();
    let state = ApiState::new(range, range, Arc::new(AssumeAlive));
    let app = http_api::router(state.clone());

    let status = call(&app, GET, "/status", None).await;
    assert_eq!(status.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        status.body.contains("Status: initialising"),
        "{}",
        status.body
    );
    expect_all(
        &app,
        &[
            // Configuration is known already; allocation is not.
            (GET, "/ipinfo/defaultsubnet", None, 200, "10.32.0.0/12"),
            (POST, "/ip/c1", None, 503, "IPAM is not initialised yet\n"),
        ],
    )
    .await;

    state.set_ready(
        Allocator::new(range, range).unwrap(),
        Store::new(dir.path()),
    );
    assert_eq!(
        call(&app, GET, "/status", None).await.status,
        StatusCode::OK
    );
    expect_all(&app, &[(POST, "/ip/c1", None, 200, "10.32.0.1/12")]).await;
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
    let alive_1 = Some("check-alive=1");
    expect_all(
        &app,
        &[
            (POST, "/ip/dead", ALIVE, 200, "cancelled"),
            (POST, "/ip/dead/10.40.0.0/24", ALIVE, 200, "cancelled"),
            (PUT, "/ip/dead/10.32.0.9/12", ALIVE, 200, "cancelled"),
            // Nothing was recorded for the cancelled requests.
            (GET, "/ip", None, 200, "{\"owned\":null}\n"),
            // Without check-alive nobody asks whether it runs (weave:expose, weave:extern, `_`).
            (POST, "/ip/dead", None, 200, "10.32.0.1/12"),
            (POST, "/ip/alive", ALIVE, 200, "10.32.0.2/12"),
            // Only the literal `true` turns the check on, as Go's FormValue comparison does.
            (POST, "/ip/dead/10.40.0.0/24", alive_1, 200, "10.40.0.1/24"),
        ],
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
    expect_all(
        &first,
        &[
            (POST, "/ip/c1", ALIVE, 200, "10.32.0.1/12"),
            (POST, "/ip/c2", ALIVE, 200, "10.32.0.2/12"),
            (PUT, "/ip/c3/10.2.1.1/24", None, 204, ""),
            (DELETE, "/ip/c1", None, 204, ""),
        ],
    )
    .await;
    let before = call(&first, GET, "/ip", None).await.body;
    drop(first);

    let second = start();
    assert_eq!(call(&second, GET, "/ip", None).await.body, before);
    expect_all(
        &second,
        &[
            // The same container gets its old address back, and the freed one is reused first.
            (POST, "/ip/c2", ALIVE, 200, "10.32.0.2/12"),
            (POST, "/ip/c4", ALIVE, 200, "10.32.0.1/12"),
            (GET, "/ip/c3/10.2.1.0/24", None, 200, "10.2.1.1/24"),
        ],
    )
    .await;
}
