//! Which Docker Engine API endpoint a request is for: one table, no I/O.
//!
//! Docker accepts every path with or without a `/vX.Y` version prefix (the docker CLI sends
//! `/v1.41/...`, bollard sends bare paths), so the prefix is stripped before matching and the
//! request is forwarded with its path untouched.

use http::Method;

/// The endpoints the proxy treats specially; everything else is [`Endpoint::Other`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /containers/create`: rewritten so the container waits for the weave network.
    ContainerCreate,
    /// `GET /containers/json`: the list shows each container's command as the client gave it.
    ContainerList,
    /// `GET /containers/{id}/json`: the inspect shows the command as the client gave it.
    ContainerInspect,
    /// `POST /containers/{id}/exec`: an exec in a weave container waits for the network too.
    ExecCreate {
        /// The container's id or name, as it appears in the path.
        container: String,
    },
    /// `POST /containers/{id}/start` or `/restart`: answered once the container is attached.
    ContainerStart {
        /// The container's id or name, as it appears in the path.
        container: String,
    },
    /// `POST /containers/{id}/attach`: hijacks the connection for the container's stdio.
    Attach,
    /// `POST /exec/{id}/start`: hijacks the connection for the exec's stdio (unless detached).
    ExecStart,
    /// `GET /containers/{id}/attach/ws`: a websocket upgrade.
    AttachWebsocket,
    /// A request that can change what an image name points at: `POST /build`, `/images/create`
    /// (pull, import), `/images/load`, `/images/{name}/tag`, `/images/prune`, `/commit`, and
    /// `DELETE /images/{name}`. The proxy's image cache trusts no name while one is in flight.
    ImageChange,
    /// Anything else: forwarded as it is.
    Other,
}

impl Endpoint {
    /// The endpoint's name in the metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Self::ContainerCreate => "container_create",
            Self::ContainerList => "container_list",
            Self::ContainerInspect => "container_inspect",
            Self::ExecCreate { .. } => "exec_create",
            Self::ContainerStart { .. } => "container_start",
            Self::Attach => "container_attach",
            Self::ExecStart => "exec_start",
            Self::AttachWebsocket => "container_attach_ws",
            Self::ImageChange => "image_change",
            Self::Other => "other",
        }
    }

    /// Endpoints where Docker may take over the connection for a raw bidirectional stream.
    ///
    /// The daemon answers these with `101 UPGRADED` when the client asks for `Upgrade: tcp`,
    /// and with a bare `200` raw stream to older clients that do not.
    pub fn hijacks(&self) -> bool {
        matches!(self, Self::Attach | Self::ExecStart)
    }
}

/// Routes a request by method and path (the query is not part of `path`).
pub fn route(method: &Method, path: &str) -> Endpoint {
    let path = strip_version(path);
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        (&Method::POST, ["containers", "create"]) => Endpoint::ContainerCreate,
        (&Method::GET, ["containers", "json"]) => Endpoint::ContainerList,
        (&Method::GET, ["containers", id, "json"]) if !id.is_empty() => Endpoint::ContainerInspect,
        (&Method::POST, ["containers", id, "exec"]) if !id.is_empty() => Endpoint::ExecCreate {
            container: (*id).to_owned(),
        },
        (&Method::POST, ["containers", id, "start" | "restart"]) if !id.is_empty() => {
            Endpoint::ContainerStart {
                container: (*id).to_owned(),
            }
        }
        (&Method::POST, ["containers", id, "attach"]) if !id.is_empty() => Endpoint::Attach,
        (&Method::GET, ["containers", id, "attach", "ws"]) if !id.is_empty() => {
            Endpoint::AttachWebsocket
        }
        (&Method::POST, ["exec", id, "start"]) if !id.is_empty() => Endpoint::ExecStart,
        (&Method::POST, ["build" | "commit"])
        | (&Method::POST, ["images", "create" | "load" | "prune"])
        | (&Method::POST, ["images", .., "tag"])
        | (&Method::DELETE, ["images", _, ..]) => Endpoint::ImageChange,
        _ => Endpoint::Other,
    }
}

/// Removes a leading `/v<digits and dots>` segment, as Docker's router does.
pub fn strip_version(path: &str) -> &str {
    let Some(rest) = path.strip_prefix("/v") else {
        return path;
    };
    let end = rest.find('/').unwrap_or(rest.len());
    let version = &rest[..end];
    if !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        &rest[end..]
    } else {
        path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_the_table() {
        let cases = [
            (Method::POST, "/containers/abc/attach", Endpoint::Attach),
            (
                Method::POST,
                "/v1.41/containers/abc/attach",
                Endpoint::Attach,
            ),
            (Method::POST, "/v1.45/exec/e1/start", Endpoint::ExecStart),
            (Method::POST, "/exec/e1/start", Endpoint::ExecStart),
            (
                Method::GET,
                "/v1.41/containers/abc/attach/ws",
                Endpoint::AttachWebsocket,
            ),
            (Method::GET, "/containers/abc/attach", Endpoint::Other),
            (Method::POST, "/containers//attach", Endpoint::Other),
            (Method::POST, "/containers/abc/attach/", Endpoint::Other),
            (Method::POST, "/vx/containers/abc/attach", Endpoint::Other),
            (
                Method::POST,
                "/v1.41/Containers/abc/attach",
                Endpoint::Other,
            ),
            (Method::GET, "/_ping", Endpoint::Other),
            (Method::POST, "/v1.41/build", Endpoint::ImageChange),
            (Method::POST, "/commit", Endpoint::ImageChange),
            (Method::POST, "/images/create", Endpoint::ImageChange),
            (Method::POST, "/images/load", Endpoint::ImageChange),
            (Method::POST, "/images/prune", Endpoint::ImageChange),
            (Method::POST, "/images/busybox/tag", Endpoint::ImageChange),
            (
                Method::POST,
                "/v1.45/images/docker.io/library/busybox/tag",
                Endpoint::ImageChange,
            ),
            (
                Method::DELETE,
                "/images/registry:5000/app",
                Endpoint::ImageChange,
            ),
            (Method::GET, "/images/busybox/json", Endpoint::Other),
            (Method::POST, "/images/busybox/push", Endpoint::Other),
            (Method::GET, "/build", Endpoint::Other),
            (
                Method::POST,
                "/v1.41/containers/create",
                Endpoint::ContainerCreate,
            ),
            (
                Method::POST,
                "/containers/create",
                Endpoint::ContainerCreate,
            ),
            (Method::GET, "/containers/create", Endpoint::Other),
            (
                Method::GET,
                "/v1.45/containers/json",
                Endpoint::ContainerList,
            ),
            (
                Method::GET,
                "/containers/abc/json",
                Endpoint::ContainerInspect,
            ),
            (Method::GET, "/containers//json", Endpoint::Other),
            (
                Method::POST,
                "/v1.41/containers/web/exec",
                Endpoint::ExecCreate {
                    container: "web".into(),
                },
            ),
            (Method::GET, "/exec/abc/json", Endpoint::Other),
            (
                Method::POST,
                "/v1.41/containers/web/start",
                Endpoint::ContainerStart {
                    container: "web".into(),
                },
            ),
            (
                Method::POST,
                "/containers/abc/restart",
                Endpoint::ContainerStart {
                    container: "abc".into(),
                },
            ),
            (Method::GET, "/containers/web/start", Endpoint::Other),
            (Method::POST, "/containers//start", Endpoint::Other),
        ];
        for (method, path, want) in cases {
            assert_eq!(route(&method, path), want, "{method} {path}");
        }
    }

    #[test]
    fn strips_only_a_version_prefix() {
        let cases = [
            ("/v1.41/_ping", "/_ping"),
            ("/v1/_ping", "/_ping"),
            ("/v1.41", ""),
            ("/_ping", "/_ping"),
            ("/version", "/version"),
            ("/volumes/x", "/volumes/x"),
            ("/v/_ping", "/v/_ping"),
        ];
        for (path, want) in cases {
            assert_eq!(strip_version(path), want, "{path}");
        }
    }

    #[test]
    fn only_attach_and_exec_start_hijack() {
        assert!(Endpoint::Attach.hijacks());
        assert!(Endpoint::ExecStart.hijacks());
        assert!(!Endpoint::AttachWebsocket.hijacks());
        assert!(!Endpoint::Other.hijacks());
    }
}
