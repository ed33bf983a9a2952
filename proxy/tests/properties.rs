//! Property tests of the pure cores that read untrusted input: `WEAVE_CIDR` from a container's
//! environment, the create body from a client, and the hostname, domain and `--add-host`
//! entries that end up in a container's `/etc/hosts`.
//!
//! Each property is a promise from the function's own docs, checked on generated input rather
//! than on the few rows of its table test. The case count is proptest's (256, or
//! `PROPTEST_CASES`), which keeps the file to a few seconds; failures are not written to a
//! regressions file, so a run leaves the tree as it found it. A shrunk failure worth keeping
//! becomes a row in the function's table test.

use std::net::{IpAddr, Ipv4Addr};

use api::CidrToken;
use api::naming::{fqdn, hosts_file};
use ipnet::Ipv4Net;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{Map, Number, Value};
use weaveproxy::cidr::{Decision, LeaveAlone, decide};
use weaveproxy::intercept::create::{
    Command, ImageCommand, Outcome, Plan, decide_with_image, docker_command, plan, rewrite,
};
use weaveproxy::naming::{
    DEFAULT_MATCH, DEFAULT_REPLACEMENT, Dns, HostnameRule, MAX_FQDN, NamingError, apply_dns,
    search_list,
};
use weaveproxy::weavecontainer::WEAVEWAIT;

/// proptest's defaults, without the regressions file it would write beside this one.
fn config() -> Config {
    Config {
        failure_persistence: None,
        ..Config::default()
    }
}

/// Characters that end a line or a field of `/etc/hosts`, or start a comment, in the forms a
/// container's name or `--add-host` entry could smuggle them in.
const HOSTS_BREAKERS: &[&str] = &[
    "\n", "\r", "\r\n", "\t", " ", "\0", "#", "\u{b}", "\u{c}", "\u{85}", "\u{2028}",
];

// ---------------------------------------------------------------------------------------------
// WEAVE_CIDR
// ---------------------------------------------------------------------------------------------

/// Strings near the token grammar, where a parser's edge cases are: every prefix, dotted quads
/// with octets past 255, prefix lengths past 32, stray separators.
fn cidr_like() -> impl Strategy<Value = String> {
    let prefix = prop_oneof![
        Just(""),
        Just("ip:"),
        Just("net:"),
        Just("net:default"),
        Just("dns:"),
        Just(":"),
    ];
    let octet = prop_oneof![4 => (0u16..=255).prop_map(|o| o.to_string()), 1 => "[0-9]{0,4}"];
    let quad = vec(octet, 1..=5).prop_map(|octets| octets.join("."));
    let len = prop_oneof![
        Just(String::new()),
        (0u8..=40).prop_map(|l| format!("/{l}")),
        "/[0-9a-z/]{0,3}",
    ];
    let body = prop_oneof![
        4 => (quad, len).prop_map(|(q, l)| q + &l),
        1 => "[0-9a-f:./]{0,12}",
    ];
    prop_oneof![
        (prefix, body).prop_map(|(p, b)| format!("{p}{b}")),
        any::<String>(),
    ]
}

fn ipv4_net() -> impl Strategy<Value = Ipv4Net> {
    (any::<u32>(), 0u8..=32).prop_map(|(ip, len)| Ipv4Net::new(Ipv4Addr::from(ip), len).unwrap())
}

/// Every token the parser can return.
fn cidr_token() -> impl Strategy<Value = CidrToken> {
    prop_oneof![
        Just(CidrToken::DefaultSubnet),
        ipv4_net().prop_map(|net| CidrToken::Subnet(net.trunc())),
        ipv4_net().prop_map(CidrToken::Address),
    ]
}

/// A run of the whitespace `split_whitespace` splits at, Unicode's included.
fn whitespace() -> impl Strategy<Value = String> {
    vec(
        prop_oneof![
            Just(' '),
            Just('\t'),
            Just('\n'),
            Just('\r'),
            Just('\u{a0}'),
            Just('\u{2003}')
        ],
        1..3,
    )
    .prop_map(String::from_iter)
}

fn network_mode() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("default".to_owned()),
        Just("bridge".to_owned()),
        Just("none".to_owned()),
        Just("host".to_owned()),
        "container:[a-z0-9]{0,6}",
        any::<String>(),
    ]
}

/// `KEY=value` entries, some of them about `WEAVE_CIDR` and some only nearly so.
fn env_entry() -> impl Strategy<Value = String> {
    prop_oneof![
        cidr_like().prop_map(|v| format!("WEAVE_CIDR={v}")),
        Just("WEAVE_CIDR=none".to_owned()),
        Just("WEAVE_CIDR=".to_owned()),
        Just("WEAVE_CIDRX=none".to_owned()),
        Just("WEAVE_CIDR".to_owned()),
        "[A-Z_]{1,6}=[a-z0-9 ]{0,6}",
        any::<String>(),
    ]
}

proptest! {
    #![proptest_config(config())]

    /// Any string parses or fails; a failure names the token as written and the forms that
    /// would have worked, as `FORMS` promises.
    #[test]
    fn cidr_tokens_parse_or_name_themselves(token in cidr_like()) {
        if let Err(err) = token.parse::<CidrToken>() {
            prop_assert_eq!(&err.token, &token);
            let message = err.to_string();
            prop_assert!(message.contains(&format!("{token:?}")), "{}", message);
            prop_assert!(message.contains("net:<cidr>"), "{}", message);
        }
    }

    /// What an accepted token displays is accepted again as the same token, so the proxy can
    /// log or pass on a token and mean the same addresses.
    #[test]
    fn accepted_cidr_tokens_round_trip(token in cidr_like()) {
        if let Ok(parsed) = token.parse::<CidrToken>() {
            prop_assert_eq!(parsed.to_string().parse::<CidrToken>(), Ok(parsed));
        }
    }

    /// Every token displays as text that parses back to it.
    #[test]
    fn cidr_tokens_display_as_themselves(token in cidr_token()) {
        prop_assert_eq!(token.to_string().parse::<CidrToken>(), Ok(token));
    }

    /// The written forms mean what the docs say: `ip:` and a bare `<ip>/<len>` are that exact
    /// address, `net:` drops the host bits.
    #[test]
    fn cidr_token_forms_mean_what_they_say(net in ipv4_net()) {
        prop_assert_eq!(format!("ip:{net}").parse(), Ok(CidrToken::Address(net)));
        prop_assert_eq!(net.to_string().parse(), Ok(CidrToken::Address(net)));
        prop_assert_eq!(format!("net:{net}").parse(), Ok(CidrToken::Subnet(net.trunc())));
    }

    /// A whitespace-separated list decides as the sum of its parts: the tokens in order when
    /// each is accepted alone, else the first bad token's error. Only a lone `none` (and no
    /// tokens at all, the default subnet) is special.
    #[test]
    fn cidr_lists_are_the_sum_of_their_tokens(
        tokens in vec(cidr_like().prop_filter("one token", |t| {
            !t.is_empty() && !t.chars().any(char::is_whitespace)
        }), 0..5),
        seps in vec(whitespace(), 6),
        lead in any::<bool>(),
    ) {
        let mut value = if lead { seps[5].clone() } else { String::new() };
        for (token, sep) in tokens.iter().zip(&seps) {
            value.push_str(token);
            value.push_str(sep);
        }
        let got = decide("", [format!("WEAVE_CIDR={value}").as_str()], false);
        let want = if tokens == ["none"] {
            Ok(Decision::LeaveAlone(LeaveAlone::CidrNone))
        } else if tokens.is_empty() {
            Ok(Decision::Attach(vec![CidrToken::DefaultSubnet]))
        } else {
            let mut all = Vec::new();
            let mut failed = None;
            for token in &tokens {
                match decide("", [format!("WEAVE_CIDR={token}").as_str()], false) {
                    Ok(Decision::Attach(one)) => all.extend(one),
                    Ok(other) => prop_assert!(false, "{token:?} alone decided {other:?}"),
                    Err(err) => {
                        failed = Some(err);
                        break;
                    }
                }
            }
            failed.map_or(Ok(Decision::Attach(all)), Err)
        };
        prop_assert_eq!(got, want, "{:?}", value);
    }

    /// The last `WEAVE_CIDR` wins whatever came before it; a network mode other than the
    /// default ones leaves the container alone whatever the environment says.
    #[test]
    fn decisions_follow_the_last_cidr_and_the_network_mode(
        mode in network_mode(),
        env in vec(env_entry(), 0..6),
        last in cidr_like(),
        no_default in any::<bool>(),
    ) {
        let entries = env.iter().map(String::as_str);
        let got = decide(&mode, entries.clone(), no_default);
        if !matches!(mode.as_str(), "" | "default" | "bridge" | "none") {
            prop_assert_eq!(got, Ok(Decision::LeaveAlone(LeaveAlone::NetworkMode(mode))));
            return Ok(());
        }
        if let Ok(Decision::Attach(tokens)) = &got {
            prop_assert!(!tokens.is_empty());
        }
        let last = format!("WEAVE_CIDR={last}");
        prop_assert_eq!(
            decide(&mode, entries.chain([last.as_str()]), no_default),
            decide(&mode, [last.as_str()], no_default)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The create body
// ---------------------------------------------------------------------------------------------

/// Strings the rewrite looks at, mixed with anything at all.
fn odd_string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just(WEAVEWAIT.to_owned()),
        Just("/w".to_owned()),
        Just("/old:/w:ro".to_owned()),
        Just("/old:/w".to_owned()),
        Just("sh".to_owned()),
        Just("WEAVE_CIDR=none".to_owned()),
        "[a-z/:=]{0,8}",
        any::<String>(),
    ]
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| Number::from_f64(f).map(Value::Number)),
        // Past u64 and with trailing zeros: kept as written only if nothing re-encodes them.
        "[1-9][0-9]{20,30}(\\.[0-9]{1,3}0)?"
            .prop_map(|n| serde_json::from_str::<Value>(&n).unwrap()),
        odd_string().prop_map(Value::String),
    ]
}

fn json_key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("Image".to_owned()),
        Just("Entrypoint".to_owned()),
        Just("Cmd".to_owned()),
        Just("Env".to_owned()),
        Just("HostConfig".to_owned()),
        Just("Target".to_owned()),
        "[A-Za-z]{1,8}",
        any::<String>(),
    ]
}

fn json_value() -> BoxedStrategy<Value> {
    json_leaf()
        .prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                vec(inner.clone(), 0..4).prop_map(Value::Array),
                vec((json_key(), inner), 0..4).prop_map(|kv| Value::Object(Map::from_iter(kv))),
            ]
        })
        .boxed()
}

/// An `Entrypoint`, `Cmd` or `Env`: mostly the shapes Docker takes, sometimes anything.
fn string_list_field() -> impl Strategy<Value = Value> {
    prop_oneof![
        2 => Just(Value::Null),
        2 => odd_string().prop_map(Value::String),
        4 => vec(odd_string().prop_map(Value::String), 0..4).prop_map(Value::Array),
        1 => vec(json_leaf(), 0..3).prop_map(Value::Array),
        1 => json_value(),
    ]
}

/// A `HostConfig.Mounts` entry, some at `/w`.
fn mount() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop_oneof![Just("/w"), Just("/m"), Just("/w/")]
            .prop_map(|t| Value::Object(Map::from_iter([("Target".to_owned(), t.into())]))),
        json_value(),
    ]
}

/// An optional field, absent about a third of the time.
fn field(
    name: &'static str,
    value: impl Strategy<Value = Value>,
) -> impl Strategy<Value = Option<(String, Value)>> {
    proptest::option::weighted(0.65, value.prop_map(move |v| (name.to_owned(), v)))
}

/// Objects of the given fields plus arbitrary others, in a generated order.
fn object_with(
    fields: Vec<BoxedStrategy<Option<(String, Value)>>>,
) -> impl Strategy<Value = Map<String, Value>> {
    (fields, vec((json_key(), json_value()), 0..4)).prop_flat_map(|(known, extra)| {
        let entries: Vec<_> = known.into_iter().flatten().chain(extra).collect();
        Just(entries).prop_shuffle().prop_map(Map::from_iter)
    })
}

fn host_config() -> impl Strategy<Value = Value> {
    let network = prop_oneof![
        Just(Value::from("")),
        Just(Value::from("bridge")),
        Just(Value::from("host")),
        json_leaf()
    ];
    let binds = prop_oneof![
        4 => vec(odd_string().prop_map(Value::String), 0..4).prop_map(Value::Array),
        1 => vec(json_leaf(), 0..3).prop_map(Value::Array),
        1 => json_value(),
    ];
    let object = object_with(vec![
        field("Binds", binds).boxed(),
        field(
            "Mounts",
            prop_oneof![3 => vec(mount(), 0..3).prop_map(Value::Array), 1 => json_value()],
        )
        .boxed(),
        field("NetworkMode", network).boxed(),
        field("Dns", string_list_field()).boxed(),
        field("DnsSearch", string_list_field()).boxed(),
    ]);
    prop_oneof![4 => object.prop_map(Value::Object), 1 => json_value()]
}

/// A create body: Docker's fields of the right and wrong types, among fields of any name.
fn create_body() -> impl Strategy<Value = Map<String, Value>> {
    object_with(vec![
        field(
            "Image",
            prop_oneof![odd_string().prop_map(Value::String), json_leaf()],
        )
        .boxed(),
        field("Entrypoint", string_list_field()).boxed(),
        field("Cmd", string_list_field()).boxed(),
        field("Env", string_list_field()).boxed(),
        field(
            "Hostname",
            prop_oneof![3 => "[a-z.]{0,8}".prop_map(Value::String), 1 => json_leaf()],
        )
        .boxed(),
        field(
            "Domainname",
            prop_oneof![3 => "[a-z.]{0,8}".prop_map(Value::String), 1 => json_leaf()],
        )
        .boxed(),
        field("Labels", json_value()).boxed(),
        field("HostConfig", host_config()).boxed(),
    ])
}

fn image_command() -> impl Strategy<Value = ImageCommand> {
    let list = || proptest::option::of(vec(odd_string(), 0..3));
    (list(), list(), vec(env_entry(), 0..3)).prop_map(|(entrypoint, cmd, env)| ImageCommand {
        entrypoint,
        cmd,
        env,
    })
}

/// Whether `json::string_list` reads this: absent, null, a string or an array of strings.
fn is_string_list(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null | Value::String(_)) => true,
        Some(Value::Array(items)) => items.iter().all(Value::is_string),
        Some(_) => false,
    }
}

fn list(object: &Map<String, Value>, field: &str) -> Option<Vec<String>> {
    match object.get(field)? {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(items) => Some(
            items
                .iter()
                .map(|i| i.as_str().unwrap().to_owned())
                .collect(),
        ),
        _ => None,
    }
}

/// What Docker would run for this body.
fn command(object: &Map<String, Value>, image: &ImageCommand) -> (Vec<String>, Vec<String>) {
    let entrypoint = list(object, "Entrypoint");
    let cmd = list(object, "Cmd");
    docker_command(entrypoint.as_deref(), cmd.as_deref(), image)
}

/// Every key of `before` but `owned` has the same value, written the same, in `after`, in the
/// same order; `after` has no keys of its own but `owned` ones.
fn keeps_all_but(
    before: &Map<String, Value>,
    after: &Map<String, Value>,
    owned: &[&str],
) -> Result<(), TestCaseError> {
    let kept = |map: &Map<String, Value>| -> Vec<(String, String)> {
        map.iter()
            .filter(|(k, _)| !owned.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), serde_json::to_string(v).unwrap()))
            .collect()
    };
    prop_assert_eq!(kept(before), kept(after));
    let order = |map: &Map<String, Value>, of: &Map<String, Value>| -> Vec<String> {
        map.keys()
            .filter(|k| of.contains_key(*k))
            .cloned()
            .collect()
    };
    prop_assert_eq!(order(before, after), order(after, before), "key order");
    Ok(())
}

/// The container path of a `src:dst[:opts]` bind.
fn bind_target(bind: &Value) -> Option<&str> {
    bind.as_str()?.split(':').nth(1)
}

proptest! {
    #![proptest_config(config())]

    /// Whatever the body, the rewrite returns. It fails only on a field of a type Docker would
    /// refuse, and always on a bad `Entrypoint` or `Cmd`. It leaves what it does not own
    /// (everything but `Entrypoint`, `Cmd`, `HostConfig.Binds` and `HostConfig.Mounts`) as it
    /// was, written the same and in the same order; it replaces any bind or mount at `/w`
    /// with its own; and the container then runs `/w/w` followed by exactly what Docker would
    /// have run, unless that already started with `/w/w`.
    #[test]
    fn rewrites_keep_what_they_do_not_own(
        body in create_body(),
        image in image_command(),
        source in "/[a-z/]{1,12}",
    ) {
        let mut value = Value::Object(body.clone());
        let result =
            Command::read(&body).and_then(|command| rewrite(&mut value, &command, &image, &source));
        let after = value.as_object().unwrap();
        let commands_ok = is_string_list(body.get("Entrypoint")) && is_string_list(body.get("Cmd"));
        let host_config_ok = match body.get("HostConfig") {
            None | Some(Value::Null) => true,
            Some(Value::Object(hc)) => matches!(hc.get("Binds"), None | Some(Value::Null | Value::Array(_))),
            Some(_) => false,
        };
        let outcome = match result {
            Err(err) => {
                prop_assert!(!commands_ok || !host_config_ok, "{err} for {body:?}");
                return Ok(());
            }
            Ok(outcome) => outcome,
        };
        prop_assert!(commands_ok, "{body:?}");
        let (entrypoint, cmd) = command(&body, &image);
        if let Outcome::Forward(_) = outcome {
            prop_assert!(entrypoint.is_empty() && cmd.is_empty());
            prop_assert_eq!(after, &body);
            return Ok(());
        }
        prop_assert!(host_config_ok, "{body:?}");
        keeps_all_but(&body, after, &["Entrypoint", "Cmd", "HostConfig"])?;
        let empty = Map::new();
        let hc_before = body.get("HostConfig").and_then(Value::as_object).unwrap_or(&empty);
        let hc_after = after["HostConfig"].as_object().unwrap();
        keeps_all_but(hc_before, hc_after, &["Binds", "Mounts"])?;

        let binds_before = hc_before.get("Binds").and_then(Value::as_array).cloned().unwrap_or_default();
        let mut binds_after = hc_after["Binds"].as_array().unwrap().clone();
        prop_assert_eq!(binds_after.pop(), Some(Value::String(format!("{source}:/w:ro"))));
        let kept: Vec<_> = binds_before.iter().filter(|b| bind_target(b) != Some("/w")).cloned().collect();
        prop_assert_eq!(binds_after, kept);
        match (hc_before.get("Mounts"), hc_after.get("Mounts")) {
            (Some(Value::Array(before)), Some(Value::Array(after))) => {
                let kept: Vec<_> = before.iter().filter(|m| m.get("Target") != Some(&Value::from("/w"))).cloned().collect();
                prop_assert_eq!(after, &kept);
            }
            (before, after) => prop_assert_eq!(before, after),
        }

        let (new_entrypoint, new_cmd) = command(after, &image);
        if entrypoint.first().map(String::as_str) == Some(WEAVEWAIT) {
            prop_assert_eq!((new_entrypoint, new_cmd), (entrypoint, cmd));
        } else {
            let wrapped: Vec<String> = std::iter::once(WEAVEWAIT.to_owned()).chain(entrypoint).collect();
            prop_assert_eq!((new_entrypoint, new_cmd), (wrapped, cmd));
        }
    }

    /// A body that is not an object is an error, never a panic, and is left as it was.
    #[test]
    fn rewrites_refuse_what_is_not_an_object(
        body in json_value().prop_filter("not an object", |v| !v.is_object()),
        image in image_command(),
    ) {
        let mut value = body.clone();
        prop_assert!(rewrite(&mut value, &Command::default(), &image, "/s").is_err());
        prop_assert_eq!(value, body);
    }

    /// Planning reads any document: what is not an object is forwarded, and the only error is
    /// a `WEAVE_CIDR` token the request itself set; deciding with the image's `ENV` returns.
    #[test]
    fn plans_take_any_document(
        body in prop_oneof![3 => create_body().prop_map(Value::Object), 1 => json_value()],
        image in image_command(),
        no_default in any::<bool>(),
    ) {
        let planned = plan(&body, no_default);
        if let Ok(Plan::Rewrite(request)) = &planned {
            let _ = decide_with_image(request, &image, no_default);
        }
        let Some(object) = body.as_object() else {
            prop_assert!(matches!(planned, Ok(Plan::Forward(_))));
            return Ok(());
        };
        if let Err(err) = planned {
            let env = list(object, "Env").unwrap_or_default();
            let tokens: Vec<&str> = env
                .iter()
                .filter_map(|e| e.strip_prefix("WEAVE_CIDR="))
                .flat_map(str::split_whitespace)
                .collect();
            prop_assert!(tokens.contains(&err.token.as_str()), "{:?} not in {:?}", err.token, env);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// /etc/hosts
// ---------------------------------------------------------------------------------------------

/// The lines `hosts_file` writes around the records.
const LOCALHOST_LINES: [&str; 6] = [
    "127.0.0.1       localhost",
    "::1             ip6-localhost ip6-loopback",
    "fe00::0         ip6-localnet",
    "ff00::0         ip6-mcastprefix",
    "ff02::1         ip6-allnodes",
    "ff02::2         ip6-allrouters",
];

/// A hostname as Docker would set it, with the names it is known by: the FQDN without a
/// trailing dot and the short name before the first dot, or the bare name.
fn good_fqdn() -> impl Strategy<Value = (String, String)> {
    (vec("[a-z0-9][a-z0-9-]{0,9}", 1..4), any::<bool>()).prop_map(|(labels, dot)| {
        let joined = labels.join(".");
        let names = if labels.len() == 1 {
            joined.clone()
        } else {
            format!("{joined} {}", labels[0])
        };
        (if dot { format!("{joined}.") } else { joined }, names)
    })
}

/// A name with something in it that would end a hosts line or field.
fn tainted_name() -> impl Strategy<Value = String> {
    (
        "[a-z0-9.]{1,6}",
        proptest::sample::select(HOSTS_BREAKERS),
        "[a-z0-9. ]{0,12}",
    )
        .prop_map(|(head, bad, tail)| format!("{head}{bad}{tail}"))
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u8; 16]>().prop_map(IpAddr::from)
    ]
}

/// `name` and `ip` written as one `--add-host` entry, in each form Docker reads.
fn add_host(name: String, ip: IpAddr) -> impl Strategy<Value = String> {
    prop_oneof![
        Just(format!("{name}:{ip}")),
        Just(format!("{name}={ip}")),
        Just(format!("{name}=[{ip}]")),
        Just(format!("{name}:[{ip}]")),
        Just(format!("{name}= {ip} ")),
    ]
}

/// An `--add-host` entry, with the record it must produce, if any.
fn extra_host() -> impl Strategy<Value = (String, Option<String>)> {
    let good = ("[a-z0-9][a-z0-9.-]{0,11}", ip()).prop_flat_map(|(name, ip)| {
        let line = format!("{ip:<15} {name}");
        add_host(name, ip).prop_map(move |entry| (entry, Some(line.clone())))
    });
    let tainted = (tainted_name(), ip())
        .prop_flat_map(|(name, ip)| add_host(name, ip).prop_map(|entry| (entry, None)));
    let unusable = prop_oneof![
        Just("gw:host-gateway".to_owned()),
        Just("gw=host-gateway".to_owned()),
        Just(":10.0.0.1".to_owned()),
        Just("=10.0.0.1".to_owned()),
        "[a-z]{1,8}",
        "[a-z]{1,4}:(25[6-9]|[3-9][0-9]{2})\\.0\\.0\\.1",
    ]
    .prop_map(|entry| (entry, None));
    prop_oneof![3 => good, 2 => tainted, 1 => unusable]
}

proptest! {
    #![proptest_config(config())]

    /// The file is exactly the documented layout, record for record: the container's names on
    /// each weave address, one line per usable `--add-host` entry, then the localhost block.
    /// A hostname or entry with a line break, blank, control character or `#` in its name
    /// makes no record at all, so none of it can reach the file.
    #[test]
    fn hosts_files_have_exactly_the_documented_records(
        fqdn in prop_oneof![
            3 => good_fqdn().prop_map(|(fqdn, names)| (fqdn, Some(names))),
            2 => tainted_name().prop_map(|fqdn| (fqdn, None)),
            1 => Just((String::new(), None)),
        ],
        addrs in vec(any::<u32>().prop_map(Ipv4Addr::from), 0..4),
        extras in vec(extra_host(), 0..6),
    ) {
        let (fqdn, names) = fqdn;
        let entries: Vec<String> = extras.iter().map(|(entry, _)| entry.clone()).collect();
        let mut want = vec!["# created by Weave - BEGIN".to_owned(), "# container hostname".to_owned()];
        if let Some(names) = names {
            want.extend(addrs.iter().map(|addr| format!("{:<15} {names}", addr.to_string())));
        }
        want.extend([String::new(), "# static names added with --add-host".to_owned()]);
        want.extend(extras.into_iter().filter_map(|(_, line)| line));
        want.extend([String::new(), "# default localhost entries".to_owned()]);
        want.extend(LOCALHOST_LINES.map(str::to_owned));
        want.push("# created by Weave - END".to_owned());
        prop_assert_eq!(hosts_file(&fqdn, &addrs, &entries), want.join("\n") + "\n");
    }

    /// On any input at all: the layout's fixed lines are where they belong, the container
    /// block has one line per address or none, each `--add-host` record comes from its own
    /// entry, and no record line holds a control character, a `#` or more names than the
    /// layout gives it.
    #[test]
    fn hosts_files_take_no_extra_lines_from_any_input(
        fqdn in prop_oneof![any::<String>(), tainted_name()],
        addrs in vec(any::<u32>().prop_map(Ipv4Addr::from), 0..4),
        entries in vec(prop_oneof![any::<String>(), extra_host().prop_map(|(e, _)| e)], 0..6),
    ) {
        let file = hosts_file(&fqdn, &addrs, &entries);
        prop_assert!(file.ends_with('\n'));
        let lines: Vec<&str> = file.split('\n').collect();
        let (lines, last) = lines.split_at(lines.len() - 1);
        prop_assert_eq!(last, [""]);
        prop_assert_eq!(&lines[..2], ["# created by Weave - BEGIN", "# container hostname"]);
        let extras_at = lines.iter().position(|l| *l == "# static names added with --add-host").unwrap();
        let localhost_at = lines.iter().position(|l| *l == "# default localhost entries").unwrap();
        prop_assert_eq!(&lines[localhost_at + 1..], [&LOCALHOST_LINES[..], &["# created by Weave - END"]].concat());
        prop_assert_eq!(lines[extras_at - 1], "");
        prop_assert_eq!(lines[localhost_at - 1], "");
        let container = &lines[2..extras_at - 1];
        let extra = &lines[extras_at + 1..localhost_at - 1];
        prop_assert!(container.is_empty() || container.len() == addrs.len(), "{:?}", container);
        prop_assert!(extra.len() <= entries.len(), "{:?}", extra);
        for (line, addr) in container.iter().zip(&addrs) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            prop_assert!((2..=3).contains(&fields.len()), "{:?}", line);
            prop_assert_eq!(fields[0], addr.to_string());
        }
        let mut unused: Vec<&String> = entries.iter().collect();
        for line in extra {
            let fields: Vec<&str> = line.split_whitespace().collect();
            prop_assert_eq!(fields.len(), 2, "{:?}", line);
            prop_assert!(fields[0].parse::<IpAddr>().is_ok(), "{:?}", line);
            let from = unused.iter().position(|e| {
                e.strip_prefix(fields[1]).is_some_and(|rest| rest.starts_with([':', '=']))
            });
            prop_assert!(from.is_some(), "{:?} from none of {:?}", line, entries);
            unused.remove(from.unwrap());
        }
        for line in container.iter().chain(extra) {
            prop_assert!(!line.chars().any(|c| c.is_control() || c == '#'), "{:?}", line);
            prop_assert!(!line.chars().any(|c| c.is_whitespace() && c != ' '), "{:?}", line);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Naming
// ---------------------------------------------------------------------------------------------

fn rule(label: Option<&str>, pattern: &str, replacement: &str) -> HostnameRule {
    HostnameRule::new(label.map(str::to_owned), pattern, replacement).unwrap()
}

/// Patterns built from regex syntax, so that many compile and many do not.
fn pattern() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9().*+?|^$\\[\\]{}\\\\-]{0,12}",
        Just(DEFAULT_MATCH.to_owned()),
        any::<String>(),
    ]
}

fn weave_dns() -> impl Strategy<Value = Dns> {
    (
        prop_oneof![
            Just("weave.local.".to_owned()),
            Just("corp.internal".to_owned()),
            "[a-z.]{1,70}"
        ],
        ip(),
    )
        .prop_map(|(domain, server)| Dns { domain, server })
}

fn dns_body(server: IpAddr) -> impl Strategy<Value = Map<String, Value>> {
    let servers = prop_oneof![
        Just(Value::Null),
        vec(
            prop_oneof![
                Just(server.to_string()),
                ip().prop_map(|ip| ip.to_string()),
                odd_string()
            ],
            0..3
        )
        .prop_map(Value::from_iter),
        string_list_field(),
    ];
    let search = prop_oneof![
        Just(Value::Null),
        vec("[a-z.]{1,8}", 0..2).prop_map(Value::from_iter),
        string_list_field(),
    ];
    let host_config = prop_oneof![
        4 => object_with(vec![field("Dns", servers).boxed(), field("DnsSearch", search).boxed()])
            .prop_map(Value::Object),
        1 => json_value(),
    ];
    object_with(vec![
        field(
            "Hostname",
            prop_oneof![3 => "[a-z.]{0,8}".prop_map(Value::String), 1 => json_leaf()],
        )
        .boxed(),
        field(
            "Domainname",
            prop_oneof![3 => "[a-z.]{0,8}".prop_map(Value::String), 1 => json_leaf()],
        )
        .boxed(),
        field("HostConfig", host_config).boxed(),
    ])
}

proptest! {
    #![proptest_config(config())]

    /// An FQDN is empty exactly when there is no hostname, and otherwise the hostname with
    /// the domain, if any, after one dot.
    #[test]
    fn fqdns_join_hostname_and_domain(hostname in any::<String>(), domain in any::<String>()) {
        let got = fqdn(&hostname, &domain);
        prop_assert_eq!(got.is_empty(), hostname.is_empty());
        prop_assert!(got.starts_with(&hostname));
        if !hostname.is_empty() && !domain.is_empty() {
            prop_assert_eq!(&got[hostname.len()..hostname.len() + 1], ".");
            prop_assert_eq!(&got[hostname.len() + 1..], domain);
        } else {
            prop_assert_eq!(got, hostname);
        }
    }

    /// Any flags compile or are refused in one line naming the pattern; any rule derives
    /// some hostname from any name and labels, failing only when its label asks for it.
    #[test]
    fn any_rule_derives_or_says_why(
        label in proptest::option::of("[a-z]{1,3}"),
        pattern in pattern(),
        replacement in prop_oneof!["[a-z$0-9{}]{0,8}", any::<String>()],
        name in proptest::option::of(any::<String>()),
        labels in proptest::option::of(json_value()),
    ) {
        match HostnameRule::new(label.clone(), &pattern, &replacement) {
            Err(NamingError::BadPattern { pattern: named, reason }) => {
                prop_assert_eq!(named, pattern);
                prop_assert!(!reason.contains('\n'), "{:?}", reason);
            }
            Err(other) => prop_assert!(false, "{other:?}"),
            Ok(rule) => {
                if let Err(err) = rule.derive(name.as_deref(), labels.as_ref()) {
                    prop_assert!(label.is_some(), "{err:?}");
                }
            }
        }
    }

    /// Without flags, the hostname is the name, less the one leading `/` Docker's API allows.
    #[test]
    fn the_default_rule_is_the_name(name in any::<String>(), labels in proptest::option::of(json_value())) {
        let want = name.strip_prefix('/').unwrap_or(&name);
        prop_assert_eq!(HostnameRule::default().derive(Some(&name), labels.as_ref()), Ok(want.to_owned()));
        let explicit = rule(None, DEFAULT_MATCH, DEFAULT_REPLACEMENT);
        prop_assert_eq!(explicit.derive(Some(&name), None), Ok(want.to_owned()));
    }

    /// The label wins when it is a non-empty string; an empty, null or missing label falls
    /// back to the name; a label or `Labels` of another type is an error naming it.
    #[test]
    fn labels_win_when_they_are_non_empty_strings(
        name in any::<String>(),
        value in prop_oneof![any::<String>().prop_map(Value::String), json_value()],
        others in vec(("[a-z]{1,3}", json_value()), 0..3),
    ) {
        let key = "weave.hostname";
        let labels = Value::Object(others.into_iter().chain([(key.to_owned(), value.clone())]).collect());
        let got = rule(Some(key), DEFAULT_MATCH, DEFAULT_REPLACEMENT).derive(Some(&name), Some(&labels));
        let name = name.strip_prefix('/').unwrap_or(&name).to_owned();
        let want = match value {
            Value::String(label) if !label.is_empty() => Ok(label),
            Value::String(_) | Value::Null => Ok(name),
            _ => Err(NamingError::LabelNotString { label: key.to_owned() }),
        };
        prop_assert_eq!(got, want);
        let not_object = Value::Array(vec![labels]);
        prop_assert_eq!(
            rule(Some(key), DEFAULT_MATCH, DEFAULT_REPLACEMENT).derive(None, Some(&not_object)),
            Err(NamingError::LabelsNotObject)
        );
    }

    /// A literal match and a replacement without `$` replace every non-overlapping
    /// occurrence, leftmost first, as `str::replace` does.
    #[test]
    fn literal_rules_replace_every_occurrence(
        word in "[a-z.*-]{1,3}",
        replacement in "[a-z.-]{0,4}",
        name in "[a-z.*-]{0,16}",
    ) {
        let got = rule(None, &regex_lite::escape(&word), &replacement).derive(Some(&name), None);
        prop_assert_eq!(got, Ok(name.replace(&word, &replacement)));
    }

    /// The search list has one entry: `.` only when a name was derived and the hostname has
    /// a domain of its own, else the weave domain.
    #[test]
    fn search_lists_have_one_entry(derived in "[a-z.]{0,4}", hostname in "[a-z.]{0,6}", domain in "[a-z.]{1,8}") {
        let has_domain = hostname.trim_end_matches('.').contains('.');
        let want = if !derived.is_empty() && has_domain { "." } else { domain.as_str() };
        prop_assert_eq!(search_list(&derived, &hostname, &domain), [want]);
    }

    /// `apply_dns` does what its docs list and nothing else: an error leaves the body as it
    /// was; otherwise only `Hostname`, `Domainname`, `HostConfig.Dns` and
    /// `HostConfig.DnsSearch` change; the user's servers come first and weaveDNS is there
    /// once; an unset hostname is named unless the FQDN would be too long, which is warned.
    #[test]
    fn dns_settings_change_only_what_they_say(
        (dns, body) in weave_dns().prop_flat_map(|dns| {
            let server = dns.server;
            (Just(dns), dns_body(server))
        }),
        derived in prop_oneof!["[a-z0-9-]{0,12}", "[a-z]{50,70}"],
    ) {
        let mut after = body.clone();
        let warning = match apply_dns(&mut after, &derived, &dns) {
            Err(_) => {
                prop_assert_eq!(after, body);
                return Ok(());
            }
            Ok(warning) => warning,
        };
        keeps_all_but(&body, &after, &["Hostname", "Domainname", "HostConfig"])?;
        let empty = Map::new();
        let hc_before = body.get("HostConfig").and_then(Value::as_object).unwrap_or(&empty);
        let hc_after = after["HostConfig"].as_object().unwrap();
        keeps_all_but(hc_before, hc_after, &["Dns", "DnsSearch"])?;

        let domain = dns.domain.strip_suffix('.').unwrap_or(&dns.domain);
        let hostname = body.get("Hostname").and_then(Value::as_str).unwrap_or_default();
        let names = hostname.is_empty() && !derived.is_empty();
        let fits = derived.len() + 1 + domain.len() <= MAX_FQDN;
        prop_assert_eq!(warning.is_some(), names && !fits);
        if names && fits {
            prop_assert_eq!(&after["Hostname"], derived.as_str());
            prop_assert_eq!(&after["Domainname"], domain);
        } else {
            prop_assert_eq!(after.get("Hostname"), body.get("Hostname"));
            prop_assert_eq!(after.get("Domainname"), body.get("Domainname"));
        }

        let servers = list(hc_before, "Dns").unwrap_or_default();
        let servers_after = list(hc_after, "Dns").unwrap();
        prop_assert_eq!(&servers_after[..servers.len()], &servers[..]);
        let listed = servers.iter().any(|s| s.parse::<IpAddr>() == Ok(dns.server));
        let added = &servers_after[servers.len()..];
        if listed {
            prop_assert!(added.is_empty(), "{:?}", added);
        } else {
            prop_assert_eq!(added, [dns.server.to_string()]);
        }

        let search = list(hc_before, "DnsSearch").unwrap_or_default();
        let search_after = list(hc_after, "DnsSearch").unwrap();
        if search.is_empty() {
            let final_hostname = after.get("Hostname").and_then(Value::as_str).unwrap_or_default();
            prop_assert_eq!(search_after, search_list(&derived, final_hostname, &dns.domain));
        } else {
            prop_assert_eq!(search_after, search);
        }
    }
}
