//! Docker Engine API calls made straight over a socket, the daemon's or a proxy's, rather than
//! through the docker CLI: for tests that need the API's own answers. They go over the tests' one
//! HTTP client, [`crate::http`].

use std::path::Path;

use serde_json::Value;

use crate::http::{Reply, Request};

/// Sends `request` to `socket`; panics when nothing answers.
#[track_caller]
pub fn call(socket: &Path, request: Request) -> Reply {
    request
        .send_unix(socket)
        .unwrap_or_else(|e| panic!("no answer from {}: {e}", socket.display()))
}

/// `GET path`, which must answer 200: its JSON.
#[track_caller]
pub fn get_json(socket: &Path, path: &str) -> Value {
    let reply = call(socket, Request::get(path));
    assert_eq!(reply.status, 200, "GET {path}: {}", reply.body);
    reply.json()
}

/// `POST /containers/create` with `body`, which must answer 201: the new container's id.
#[track_caller]
pub fn create(socket: &Path, body: &Value) -> String {
    let reply = call(socket, Request::post("/containers/create").json(body));
    assert_eq!(reply.status, 201, "{}", reply.body);
    reply.json()["Id"].as_str().expect("an Id").to_owned()
}

/// `POST /containers/{id}/start`: the status and the body.
#[track_caller]
pub fn start(socket: &Path, id: &str) -> (u16, String) {
    let reply = call(socket, Request::post(&format!("/containers/{id}/start")));
    (reply.status, reply.body)
}

/// `DELETE /containers/{id}?force=1`, which must succeed.
///
/// Docker 20.10 answers 500 "Could not kill running container ..., cannot remove - Container ...
/// is not running" when the container exits while it kills it; the daemon answers the same
/// straight, and the removal then succeeds when asked again.
#[track_caller]
pub fn remove(socket: &Path, id: &str) {
    let remove = || {
        call(
            socket,
            Request::new("DELETE", &format!("/containers/{id}?force=1")),
        )
    };
    let mut reply = remove();
    if reply.status == 500 && reply.body.contains("is not running") {
        reply = remove();
    }
    assert_eq!(reply.status, 204, "{}", reply.body);
}
