//! The weaveDNS HTTP API in-process: `/domain`, `/dns-address`, `/name` with the shapes the
//! `weave` script and the Go client send, and what they get back; and the same paths absent
//! (404) from a router without DNS.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt as _;
use router::dns::registry::Registry;
use router::http_api::{AssumeAlive, BoxFuture, Liveness};
use router::names::{self, NamesState};
use serde_json::{Value, json};
use tower::ServiceExt as _;

/// Only `alive` runs, for `check-alive=true`.
#[derive(Debug)]
struct OnlyAlive;

impl Liveness for OnlyAlive {
    fn is_alive<'a>(&'a self, id: &'a str) -> BoxFuture<'a, bool> {
        Box::pin(std::future::ready(id == "alive"))
    }
}

fn app(liveness: Arc<dyn Liveness>) -> (Router, Registry) {
    let registry = Registry::new("weave.local.");
    let state = NamesState {
        registry: registry.clone(),
        listen: "172.17.0.1:53".parse().unwrap(),
        liveness,
    };
    (names::router(state), registry)
}

async fn call(
    app: &Router,
    method: Method,
    uri: &str,
    form: Option<&str>,
    accept: Option<&str>,
) -> (StatusCode, String) {
    let mut builder = Request::builder().method(method).uri(uri);
    if let Some(accept) = accept {
        builder = builder.header(header::ACCEPT, accept);
    }
    let request = match form {
        Some(body) => builder
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body.to_owned())),
        None => builder.body(Body::empty()),
    }
    .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn listed(app: &Router) -> Value {
    let (status, body) = call(app, Method::GET, "/name", None, Some("application/json")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn entry(id: &str, addr: &str, name: &str) -> Value {
    json!({"ContainerID": id, "Addr": addr, "Hostname": name})
}

/// The entries with only the fields every client reads, sorted.
fn essentials(list: &Value) -> Vec<Value> {
    let mut out: Vec<Value> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            entry(
                e["ContainerID"].as_str().unwrap(),
                e["Addr"].as_str().unwrap(),
                e["Hostname"].as_str().unwrap(),
            )
        })
        .collect();
    out.sort_by_key(|v| v.to_string());
    out
}

#[tokio::test]
async fn domain_and_address_are_plain_text() {
    let (app, _) = app(Arc::new(AssumeAlive));
    let get = |path| {
        let app = app.clone();
        async move { call(&app, Method::GET, path, None, None).await }
    };
    assert_eq!(
        get("/domain").await,
        (StatusCode::OK, "weave.local.".into())
    );
    assert_eq!(
        get("/dns-address").await,
        (StatusCode::OK, "172.17.0.1".into())
    );
    assert_eq!(
        get("/dns-address-port").await,
        (StatusCode::OK, "172.17.0.1:53".into())
    );
}

#[tokio::test]
async fn names_are_added_listed_and_removed_like_weave_nets() {
    let (app, registry) = app(Arc::new(AssumeAlive));
    for (uri, form) in [
        ("/name/c1/10.32.0.1", "fqdn=web.weave.local"),
        ("/name/c2/10.32.0.2", "fqdn=web.weave.local."),
        (
            "/name/c2/10.32.0.3",
            "fqdn=db.weave.local&check-alive=false",
        ),
        // Outside the domain: accepted (204) and ignored, as the original.
        ("/name/c3/10.32.0.4", "fqdn=web.example.com"),
    ] {
        let (status, body) = call(&app, Method::PUT, uri, Some(form), None).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "PUT {uri} {form}: {body}");
    }
    // The fqdn may come in the query string too (the body wins when both are there).
    let (status, _) = call(
        &app,
        Method::PUT,
        "/name/c4/10.32.0.5?fqdn=cache.weave.local",
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        essentials(&listed(&app).await),
        vec![
            entry("c1", "10.32.0.1", "web.weave.local."),
            entry("c2", "10.32.0.2", "web.weave.local."),
            entry("c2", "10.32.0.3", "db.weave.local."),
            entry("c4", "10.32.0.5", "cache.weave.local."),
        ]
    );
    let mut web = registry.lookup("WEB.weave.local");
    web.sort();
    assert_eq!(
        web,
        [
            "10.32.0.1".parse::<std::net::Ipv4Addr>().unwrap(),
            "10.32.0.2".parse().unwrap()
        ]
    );

    // Bad input is a 400 with the reason; nothing changes.
    for (method, uri, form) in [
        (
            Method::PUT,
            "/name/c5/not-an-ip",
            Some("fqdn=x.weave.local"),
        ),
        (Method::PUT, "/name/c5/10.32.0.9", Some("")),
        (Method::DELETE, "/name/c5/999.1.1.1", None),
    ] {
        let (status, body) = call(&app, method.clone(), uri, form, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {uri}: {body}");
        assert!(!body.is_empty());
    }

    // DELETE with each wildcard: one address, one fqdn, a whole container, everything.
    let delete = |uri: &'static str| {
        let app = app.clone();
        async move { call(&app, Method::DELETE, uri, None, None).await.0 }
    };
    assert_eq!(delete("/name/c2/10.32.0.3").await, StatusCode::NO_CONTENT);
    assert!(registry.lookup("db.weave.local").is_empty());
    assert_eq!(
        delete("/name/c1?fqdn=other.weave.local").await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        registry.lookup("web.weave.local").len(),
        2,
        "another fqdn: kept"
    );
    assert_eq!(delete("/name/c1").await, StatusCode::NO_CONTENT);
    assert_eq!(registry.lookup("web.weave.local").len(), 1);
    assert_eq!(
        delete("/name?fqdn=cache.weave.local").await,
        StatusCode::NO_CONTENT
    );
    assert!(registry.lookup("cache.weave.local").is_empty());
    assert_eq!(delete("/name").await, StatusCode::NO_CONTENT);
    assert_eq!(listed(&app).await, json!([]));
    // Deleting what is not there is fine.
    assert_eq!(delete("/name/nobody").await, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn check_alive_keeps_no_name_for_a_stopped_container() {
    let (app, registry) = app(Arc::new(OnlyAlive));
    for id in ["alive", "dead"] {
        let (status, _) = call(
            &app,
            Method::PUT,
            &format!("/name/{id}/10.32.0.1"),
            Some(&format!("fqdn={id}.weave.local&check-alive=true")),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
    }
    assert_eq!(registry.lookup("alive.weave.local").len(), 1);
    assert!(registry.lookup("dead.weave.local").is_empty());
}

#[tokio::test]
async fn without_dns_the_paths_are_not_found() {
    // What `weaver --no-dns` serves: the IPAM API alone.
    let dir = tempfile::tempdir().unwrap();
    let alloc = router::ipam::Allocator::new(
        "10.32.0.0/12".parse().unwrap(),
        "10.32.0.0/12".parse().unwrap(),
    )
    .unwrap();
    let state = router::http_api::ApiState::ready(
        alloc,
        router::store::Store::new(dir.path()),
        Arc::new(AssumeAlive),
    );
    let app = router::http_api::router(state);
    for (method, uri) in [
        (Method::GET, "/domain"),
        (Method::GET, "/dns-address"),
        (Method::PUT, "/name/c1/10.32.0.1"),
        (Method::GET, "/name"),
    ] {
        let (status, _) = call(&app, method.clone(), uri, Some("fqdn=a.weave.local"), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {uri}");
    }
}
