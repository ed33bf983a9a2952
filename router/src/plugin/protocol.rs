//! The wire format of Docker's plugin protocol (libnetwork's `remote.md` and `ipam.md`): which
//! method a path names, the request bodies, the answers and the `{"Err": ...}` error body. Pure:
//! bytes in, values out.
//!
//! Docker's Go types encode empty maps and slices as `null` and leave out nothing, so every
//! collection here is optional and unknown fields are ignored (the schema is Docker's, and grows).

use std::collections::HashMap;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::PluginError;

/// The content type of every request and answer of the plugin protocol.
pub const CONTENT_TYPE: &str = "application/vnd.docker.plugins.v1.2+json";

/// The `Options` key through which `RequestAddress` says what the address is for.
pub const REQUEST_ADDRESS_TYPE: &str = "RequestAddressType";
/// Its value when Docker asks for a network's gateway.
pub const GATEWAY_ADDRESS_TYPE: &str = "com.docker.network.gateway";

/// One call of the protocol, parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    Activate,
    NetCapabilities,
    CreateNetwork(CreateNetwork),
    DeleteNetwork(NetworkRef),
    CreateEndpoint(CreateEndpoint),
    DeleteEndpoint(EndpointRef),
    EndpointOperInfo(EndpointRef),
    Join(EndpointRef),
    Leave(EndpointRef),
    /// `DiscoverNew`/`DiscoverDelete`, `ProgramExternalConnectivity`/`RevokeExternalConnectivity`:
    /// nothing for a driver without a cluster or port mappings to do; named for the log.
    Acknowledge(&'static str),
    IpamCapabilities,
    AddressSpaces,
    RequestPool(RequestPool),
    ReleasePool(ReleasePool),
    RequestAddress(RequestAddress),
    ReleaseAddress(ReleaseAddress),
}

/// `NetworkDriver.CreateNetwork`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateNetwork {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(rename = "IPv4Data")]
    pub ipv4_data: Option<Vec<IpamData>>,
    #[serde(rename = "IPv6Data")]
    pub ipv6_data: Option<Vec<IpamData>>,
}

/// What the IPAM driver gave a network, as Docker passes it on to the network driver.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IpamData {
    #[serde(default)]
    pub address_space: String,
    #[serde(default)]
    pub pool: String,
    #[serde(default)]
    pub gateway: String,
}

/// A request naming only a network.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct NetworkRef {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
}

/// A request naming an endpoint of a network (`Join` also carries the sandbox, which the
/// driver has no use for: Docker moves the interface itself).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct EndpointRef {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
}

/// `NetworkDriver.CreateEndpoint`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateEndpoint {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    pub interface: Option<EndpointInterface>,
}

/// The interface Docker already chose for an endpoint (its address from the IPAM driver).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EndpointInterface {
    #[serde(default)]
    pub address: String,
    #[serde(default, rename = "AddressIPv6")]
    pub address_ipv6: String,
    #[serde(default)]
    pub mac_address: String,
}

/// `IpamDriver.RequestPool`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RequestPool {
    #[serde(default)]
    pub address_space: String,
    /// `--subnet`; empty for "any".
    #[serde(default)]
    pub pool: String,
    /// `--ip-range`: where inside the pool addresses are handed out.
    #[serde(default)]
    pub sub_pool: String,
    #[serde(default)]
    pub options: Option<HashMap<String, String>>,
    #[serde(default, rename = "V6")]
    pub v6: bool,
}

/// `IpamDriver.ReleasePool`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ReleasePool {
    #[serde(rename = "PoolID")]
    pub pool_id: String,
}

/// `IpamDriver.RequestAddress`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RequestAddress {
    #[serde(rename = "PoolID")]
    pub pool_id: String,
    /// A specific address (`docker run --ip`, `network create --gateway`); empty for "any".
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub options: Option<HashMap<String, String>>,
}

impl RequestAddress {
    /// Whether Docker asks for the network's gateway rather than an endpoint's address.
    pub fn is_gateway(&self) -> bool {
        self.options
            .as_ref()
            .and_then(|o| o.get(REQUEST_ADDRESS_TYPE))
            .is_some_and(|t| t == GATEWAY_ADDRESS_TYPE)
    }
}

/// `IpamDriver.ReleaseAddress`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReleaseAddress {
    #[serde(rename = "PoolID")]
    pub pool_id: String,
    pub address: String,
}

/// The call a request path names, with its body parsed. `path` is the HTTP path, `/` and all.
///
/// # Errors
/// [`PluginError::UnknownMethod`] for a path that is no method of ours,
/// [`PluginError::BadRequest`] for a body that is not the method's JSON.
pub fn parse(path: &str, body: &[u8]) -> Result<Call, PluginError> {
    let method = path.strip_prefix('/').unwrap_or(path);
    let call = match method {
        // Bodies of these are `null` or empty: nothing to read.
        "Plugin.Activate" => Call::Activate,
        "NetworkDriver.GetCapabilities" => Call::NetCapabilities,
        "IpamDriver.GetCapabilities" => Call::IpamCapabilities,
        "IpamDriver.GetDefaultAddressSpaces" => Call::AddressSpaces,
        "NetworkDriver.DiscoverNew" => Call::Acknowledge("DiscoverNew"),
        "NetworkDriver.DiscoverDelete" => Call::Acknowledge("DiscoverDelete"),
        "NetworkDriver.ProgramExternalConnectivity" => {
            Call::Acknowledge("ProgramExternalConnectivity")
        }
        "NetworkDriver.RevokeExternalConnectivity" => {
            Call::Acknowledge("RevokeExternalConnectivity")
        }
        "NetworkDriver.CreateNetwork" => Call::CreateNetwork(body_of(method, body)?),
        "NetworkDriver.DeleteNetwork" => Call::DeleteNetwork(body_of(method, body)?),
        "NetworkDriver.CreateEndpoint" => Call::CreateEndpoint(body_of(method, body)?),
        "NetworkDriver.DeleteEndpoint" => Call::DeleteEndpoint(body_of(method, body)?),
        "NetworkDriver.EndpointOperInfo" => Call::EndpointOperInfo(body_of(method, body)?),
        "NetworkDriver.Join" => Call::Join(body_of(method, body)?),
        "NetworkDriver.Leave" => Call::Leave(body_of(method, body)?),
        "IpamDriver.RequestPool" => Call::RequestPool(body_of(method, body)?),
        "IpamDriver.ReleasePool" => Call::ReleasePool(body_of(method, body)?),
        "IpamDriver.RequestAddress" => Call::RequestAddress(body_of(method, body)?),
        "IpamDriver.ReleaseAddress" => Call::ReleaseAddress(body_of(method, body)?),
        // `AllocateNetwork`/`FreeNetwork` exist only for global-scope drivers in a swarm.
        other => return Err(PluginError::UnknownMethod(other.to_owned())),
    };
    Ok(call)
}

fn body_of<T: DeserializeOwned>(method: &str, body: &[u8]) -> Result<T, PluginError> {
    serde_json::from_slice(body).map_err(|source| PluginError::BadRequest {
        method: method.to_owned(),
        source,
    })
}

/// `Plugin.Activate`: the two roles this plugin plays.
pub fn activate() -> Value {
    json!({ "Implements": ["NetworkDriver", "IpamDriver"] })
}

/// `NetworkDriver.GetCapabilities`: local scope (global scope needed the cluster store Docker 23
/// removed); connectivity is global because the weave network spans the hosts.
pub fn net_capabilities() -> Value {
    json!({ "Scope": "local", "ConnectivityScope": "global" })
}

/// `IpamDriver.GetCapabilities`: addresses are kept by the router (saved on disk), so Docker
/// need not replay them after it restarts, and they do not depend on MAC addresses.
pub fn ipam_capabilities() -> Value {
    json!({ "RequiresMACAddress": false, "RequiresRequestReplay": false })
}

/// `IpamDriver.GetDefaultAddressSpaces`: the names are only labels to us.
pub fn address_spaces() -> Value {
    json!({
        "LocalDefaultAddressSpace": "weavelocal",
        "GlobalDefaultAddressSpace": "weaveglobal",
    })
}

/// The answer that carries nothing.
pub fn empty() -> Value {
    json!({})
}

/// The error body every failure answers with.
pub fn error(message: &str) -> Value {
    json!({ "Err": message })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_methods_and_bodies_are_parsed() {
        let full = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let cases: Vec<(&str, String, Result<Call, &str>)> = vec![
            ("/Plugin.Activate", String::new(), Ok(Call::Activate)),
            ("/Plugin.Activate", "null".into(), Ok(Call::Activate)),
            (
                "/NetworkDriver.GetCapabilities",
                "garbage".into(),
                Ok(Call::NetCapabilities),
            ),
            (
                "/NetworkDriver.CreateNetwork",
                r#"{"NetworkID":"n1","Options":{"com.docker.network.generic":{}},
                   "IPv4Data":[{"AddressSpace":"weavelocal","Pool":"10.32.0.0/12","Gateway":"10.32.0.0/12","AuxAddresses":null}],
                   "IPv6Data":null}"#
                    .into(),
                Ok(Call::CreateNetwork(CreateNetwork {
                    network_id: "n1".into(),
                    ipv4_data: Some(vec![IpamData {
                        address_space: "weavelocal".into(),
                        pool: "10.32.0.0/12".into(),
                        gateway: "10.32.0.0/12".into(),
                    }]),
                    ipv6_data: None,
                })),
            ),
            (
                "/NetworkDriver.CreateEndpoint",
                format!(
                    r#"{{"NetworkID":"n1","EndpointID":"{full}","Interface":{{"Address":"10.32.0.1/12","AddressIPv6":"","MacAddress":""}},"Options":null}}"#
                ),
                Ok(Call::CreateEndpoint(CreateEndpoint {
                    network_id: "n1".into(),
                    endpoint_id: full.into(),
                    interface: Some(EndpointInterface {
                        address: "10.32.0.1/12".into(),
                        ..EndpointInterface::default()
                    }),
                })),
            ),
            (
                "/NetworkDriver.Join",
                format!(
                    r#"{{"NetworkID":"n1","EndpointID":"{full}","SandboxKey":"/var/run/docker/netns/x","Options":{{}}}}"#
                ),
                Ok(Call::Join(EndpointRef {
                    network_id: "n1".into(),
                    endpoint_id: full.into(),
                })),
            ),
            (
                "/IpamDriver.RequestPool",
                r#"{"AddressSpace":"weavelocal","Pool":"","SubPool":"","Options":null,"V6":false}"#.into(),
                Ok(Call::RequestPool(RequestPool {
                    address_space: "weavelocal".into(),
                    ..RequestPool::default()
                })),
            ),
            (
                "/IpamDriver.RequestAddress",
                r#"{"PoolID":"weave:10.32.0.0/12","Address":"","Options":{"RequestAddressType":"com.docker.network.gateway"}}"#.into(),
                Ok(Call::RequestAddress(RequestAddress {
                    pool_id: "weave:10.32.0.0/12".into(),
                    address: String::new(),
                    options: Some(HashMap::from([(
                        REQUEST_ADDRESS_TYPE.to_owned(),
                        GATEWAY_ADDRESS_TYPE.to_owned(),
                    )])),
                })),
            ),
            (
                "/NetworkDriver.Join",
                "{not json".into(),
                Err("bad NetworkDriver.Join request: key must be a string at line 1 column 2"),
            ),
            (
                "/NetworkDriver.Leave",
                String::new(),
                Err("bad NetworkDriver.Leave request: EOF while parsing a value at line 1 column 0"),
            ),
            (
                "/NetworkDriver.Leave",
                r#"{"NetworkID":"n1"}"#.into(),
                Err("bad NetworkDriver.Leave request: missing field `EndpointID` at line 1 column 18"),
            ),
            (
                "/IpamDriver.ReleaseAddress",
                r#"{"PoolID":7,"Address":"10.32.0.1"}"#.into(),
                Err("bad IpamDriver.ReleaseAddress request: invalid type: integer `7`, expected a string at line 1 column 11"),
            ),
            (
                "/NetworkDriver.AllocateNetwork",
                "{}".into(),
                Err("unknown method NetworkDriver.AllocateNetwork"),
            ),
            ("/", String::new(), Err("unknown method ")),
        ];
        for (path, body, want) in cases {
            let got = parse(path, body.as_bytes()).map_err(|e| e.to_string());
            assert_eq!(got, want.map_err(str::to_owned), "{path} {body}");
        }
    }

    #[test]
    fn gateway_requests_are_told_apart() {
        let with = |kind: Option<&str>| RequestAddress {
            options: kind.map(|k| HashMap::from([(REQUEST_ADDRESS_TYPE.to_owned(), k.to_owned())])),
            ..RequestAddress::default()
        };
        assert!(with(Some(GATEWAY_ADDRESS_TYPE)).is_gateway());
        assert!(!with(Some("something else")).is_gateway());
        assert!(!with(None).is_gateway());
    }

    #[test]
    fn fixed_answers() {
        assert_eq!(
            activate().to_string(),
            r#"{"Implements":["NetworkDriver","IpamDriver"]}"#
        );
        assert_eq!(net_capabilities()["Scope"], "local");
        assert_eq!(error("boom").to_string(), r#"{"Err":"boom"}"#);
    }
}
