//! Container names at create: the hostname a container gets from its name or a label, and the
//! weaveDNS settings written into its create body. (Its FQDN and `/etc/hosts` are `api::naming`'s.)
//!
//! Everything here is pure. The callers own the requests, the router and the files.

use std::net::IpAddr;

use regex_lite::Regex;
use serde_json::{Map, Value};
use thiserror::Error;

use crate::json::{self, WrongType};

/// `--hostname-match` when not given: the whole name.
pub const DEFAULT_MATCH: &str = "(.*)";
/// `--hostname-replacement` when not given: the whole match.
pub const DEFAULT_REPLACEMENT: &str = "$1";

/// The longest `<hostname>.<domain>` the proxy gives a container. Weave Net has always used this
/// limit, so the same names get the same hostnames. A longer name is not set, and Docker then
/// uses the short container ID as the hostname.
pub const MAX_FQDN: usize = 64;

/// Why a hostname could not be derived.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NamingError {
    /// `--hostname-match` does not compile.
    #[error("{pattern:?} is not a valid regular expression: {reason}")]
    BadPattern {
        /// The expression as given.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The `--hostname-from-label` label holds something other than a string.
    #[error("label {label:?} (--hostname-from-label) must be a string")]
    LabelNotString {
        /// The label's key.
        label: String,
    },
    /// The create body's `Labels` is not an object.
    #[error("Labels must be an object")]
    LabelsNotObject,
}

/// How a container's hostname is made from its name or label
/// (`--hostname-from-label`, `--hostname-match`, `--hostname-replacement`).
///
/// The replacement follows Go's `Regexp.ReplaceAllString`, which is what Weave Net users wrote
/// their flags for. `regex-lite` has the same semantics for this: matches are leftmost-first and
/// do not overlap, an empty match directly after a match is skipped (so `(.*)` → `$1` is the
/// identity and does not add a second, empty copy at the end), `$1`, `$name`, `${name}` and `$$`
/// expand the same way, and `\d`, `\w`, `\s` and `\b` are ASCII-only, as in Go. (The full
/// `regex` crate's Unicode classes would differ, and cost the image about a megabyte.)
#[derive(Debug, Clone)]
pub struct HostnameRule {
    from_label: Option<String>,
    pattern: Regex,
    replacement: String,
}

impl HostnameRule {
    /// Compiles the rule: `match_re` defaults to [`DEFAULT_MATCH`] and `replacement` to
    /// [`DEFAULT_REPLACEMENT`].
    ///
    /// # Errors
    /// [`NamingError::BadPattern`] when `match_re` does not compile.
    pub fn new(
        from_label: Option<String>,
        match_re: &str,
        replacement: &str,
    ) -> Result<Self, NamingError> {
        let pattern = Regex::new(match_re).map_err(|err| NamingError::BadPattern {
            pattern: match_re.to_owned(),
            reason: one_line(&err),
        })?;
        Ok(Self {
            from_label,
            pattern,
            replacement: replacement.to_owned(),
        })
    }

    /// The hostname for a container created with `?name=` `name` and the create body's
    /// `Labels` value `labels`.
    ///
    /// The label named by `--hostname-from-label` wins when it is a non-empty string; otherwise
    /// the name is used (Docker's API also accepts it with one leading `/`). The match and
    /// replacement then apply to whichever was chosen, even when it is empty: under the default
    /// match, a replacement such as `x-$1` turns an unnamed container into `x-`.
    ///
    /// # Errors
    /// A label value that is not a string, or `Labels` that is not an object. Docker would
    /// refuse such a body too; the error names what is wrong in weave's terms.
    pub fn derive(
        &self,
        name: Option<&str>,
        labels: Option<&Value>,
    ) -> Result<String, NamingError> {
        let name = name.unwrap_or_default();
        let name = name.strip_prefix('/').unwrap_or(name);
        let source = match self.label(labels)? {
            Some(label) if !label.is_empty() => label,
            _ => name,
        };
        Ok(self
            .pattern
            .replace_all(source, self.replacement.as_str())
            .into_owned())
    }

    /// The `--hostname-from-label` label's value, when that flag is set and the label present.
    fn label<'a>(&self, labels: Option<&'a Value>) -> Result<Option<&'a str>, NamingError> {
        let Some(key) = &self.from_label else {
            return Ok(None);
        };
        match labels {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(labels)) => match labels.get(key) {
                // Docker reads a null label as "", so it falls back to the name like one.
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(value)) => Ok(Some(value)),
                Some(_) => Err(NamingError::LabelNotString { label: key.clone() }),
            },
            Some(_) => Err(NamingError::LabelsNotObject),
        }
    }
}

impl Default for HostnameRule {
    /// The rule without flags: the hostname is the container's name.
    fn default() -> Self {
        Self::new(None, DEFAULT_MATCH, DEFAULT_REPLACEMENT)
            .expect("the default hostname match compiles")
    }
}

/// Rules are equal when they were made from the same flags (a compiled `Regex` has no equality
/// of its own).
impl PartialEq for HostnameRule {
    fn eq(&self, other: &Self) -> bool {
        self.from_label == other.from_label
            && self.pattern.as_str() == other.pattern.as_str()
            && self.replacement == other.replacement
    }
}

impl Eq for HostnameRule {}

/// Regex syntax errors may draw the pattern and a caret over several lines; the flag checks
/// report one problem per line, so only the closing `error: ...` line is kept.
fn one_line(err: &regex_lite::Error) -> String {
    let text = err.to_string();
    let last = text.lines().map(str::trim).rfind(|l| !l.is_empty());
    let last = last.unwrap_or(&text);
    last.strip_prefix("error: ").unwrap_or(last).to_owned()
}

/// Where weaveDNS is, as the router reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dns {
    /// The DNS domain with its trailing dot, such as `weave.local.`.
    pub domain: String,
    /// The name server containers are given.
    pub server: IpAddr,
}

/// Points a container at weaveDNS by editing its create body in place.
///
/// - An unset `Hostname` becomes `derived`, with `Domainname` the weave domain (without its
///   trailing dot). When `<derived>.<domain>` is longer than [`MAX_FQDN`] nothing is set and
///   the returned warning says why; the DNS settings below are still made.
/// - `HostConfig.Dns` gets the weaveDNS server after the user's own, so theirs are asked
///   first; it is not added twice.
/// - `HostConfig.DnsSearch`, when empty, is set as [`search_list`] decides, so that bare names
///   of other containers resolve.
///
/// The body is only changed once all of it has been read, so an error leaves it untouched.
///
/// # Errors
/// A field of a type Docker would refuse too; the caller then sends the body as it is.
pub fn apply_dns(
    body: &mut Map<String, Value>,
    derived: &str,
    dns: &Dns,
) -> Result<Option<String>, WrongType> {
    let hostname = json::string(body, "Hostname")?.unwrap_or_default();
    // Read only to refuse a wrong type before anything changes; it may be overwritten below.
    json::string(body, "Domainname")?;
    let host_config = json::object(body, "HostConfig")?;
    let servers = host_config
        .map(|hc| string_array(hc, "Dns"))
        .transpose()?
        .flatten()
        .unwrap_or_default();
    let search_is_set = host_config
        .map(|hc| string_array(hc, "DnsSearch"))
        .transpose()?
        .flatten()
        .is_some_and(|search| !search.is_empty());

    let domain = dns.domain.strip_suffix('.').unwrap_or(&dns.domain);
    let mut warning = None;
    let mut named = None;
    if hostname.is_empty() && !derived.is_empty() {
        if derived.len() + 1 + domain.len() > MAX_FQDN {
            warning = Some(format!(
                "hostname {derived:?} with domain {domain:?} is longer than {MAX_FQDN} \
                 characters; the container keeps Docker's hostname"
            ));
        } else {
            named = Some((derived.to_owned(), domain.to_owned()));
        }
    }
    let hostname = named.as_ref().map_or(hostname, |(name, _)| name.as_str());
    let search = (!search_is_set).then(|| search_list(derived, hostname, &dns.domain));
    // Compared as addresses: `fd00:0::1` is the same server as `fd00::1`.
    let has_server = servers
        .iter()
        .any(|s| s.parse::<IpAddr>().is_ok_and(|ip| ip == dns.server));

    if let Some((hostname, domainname)) = named {
        body.insert("Hostname".into(), Value::String(hostname));
        body.insert("Domainname".into(), Value::String(domainname));
    }
    let host_config = json::object_mut(body, "HostConfig")?;
    if !has_server {
        let mut servers = servers;
        servers.push(dns.server.to_string());
        host_config.insert("Dns".into(), json::strings(servers));
    }
    if let Some(search) = search {
        host_config.insert("DnsSearch".into(), json::strings(search));
    }
    Ok(warning)
}

/// A `HostConfig` list such as `Dns`: absent or null is `None`. Docker wants an array here (a
/// lone string, which `json::string_list` would accept, is refused by the daemon), so only an
/// array is read and rewritten.
fn string_array(
    object: &Map<String, Value>,
    field: &'static str,
) -> Result<Option<Vec<String>>, WrongType> {
    match object.get(field) {
        Some(Value::String(_)) => Err(WrongType {
            field,
            expected: "an array of strings",
        }),
        _ => json::string_list(object, field),
    }
}

/// The search list for a container whose own search list is empty, given the name derived for
/// it and the `Hostname` it will be created with.
///
/// `["."]` means "no search domains" to Docker, which then writes no `search` line, and glibc
/// searches the domain of the container's hostname instead: the part of `gethostname()` after
/// its first dot. `Domainname` is not part of that (Docker makes it the NIS domain name, which
/// the resolver never reads; checked with `-h c1 --domainname weave.local`). Weave Net chose
/// `"."` for every container a name was derived for, which leaves a container named `c1`
/// (hostname `c1`, domain name `weave.local`) with no search domain at all, so `ping web`
/// fails in it. So `["."]` is kept only where it works, when a name was derived and the
/// hostname itself has a domain (the user's `-h x.weave.local`); everywhere else the weave
/// domain is searched, which every resolver, musl's included, understands.
pub fn search_list(derived: &str, hostname: &str, weave_domain: &str) -> Vec<String> {
    let has_domain = hostname.trim_end_matches('.').contains('.');
    if !derived.is_empty() && has_domain {
        vec![".".to_owned()]
    } else {
        vec![weave_domain.to_owned()]
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const APP_MATCH: &str = "^[^-]+-(?P<appname>[^-]*)-[^-]+$";

    fn rule(label: Option<&str>, match_re: &str, replacement: &str) -> HostnameRule {
        HostnameRule::new(label.map(str::to_owned), match_re, replacement).unwrap()
    }

    #[test]
    fn replacement_has_go_replace_all_semantics() {
        // (pattern, replacement, input, what Go's ReplaceAllString gives)
        let cases = [
            (DEFAULT_MATCH, DEFAULT_REPLACEMENT, "abc", "abc"),
            (DEFAULT_MATCH, DEFAULT_REPLACEMENT, "", ""),
            (DEFAULT_MATCH, "x-$1", "abc", "x-abc"),
            (DEFAULT_MATCH, "x-$1", "", "x-"),
            ("x*", "-", "abc", "-a-b-c-"),
            ("a*", "-", "baaac", "-b-c-"),
            ("a", "$0$0", "bab", "baab"),
            ("(?P<n>a)", "${n}x", "bab", "baxb"),
            // `$nx` names a group "nx", which does not exist: empty, as in Go.
            ("(?P<n>a)", "$nx", "bab", "bb"),
            ("(a)", "$1x", "bab", "bb"),
            ("(a)", "${1}x", "bab", "baxb"),
            ("(a)", "$$1", "bab", "b$1b"),
            ("(a)", "$9", "bab", "bb"),
            ("(a)", "cost $", "bab", "bcost $b"),
        ];
        for (pattern, replacement, input, want) in cases {
            let got = rule(None, pattern, replacement)
                .derive(Some(input), None)
                .unwrap();
            assert_eq!(got, want, "{pattern:?} → {replacement:?} on {input:?}");
        }
    }

    #[test]
    fn hostnames_derive_from_names_and_labels() {
        let app = rule(None, APP_MATCH, "$appname");
        let label = rule(Some("hostname-label"), DEFAULT_MATCH, DEFAULT_REPLACEMENT);
        let both = rule(Some("hostname-label"), APP_MATCH, "$appname");
        let aws = rule(None, "^aws-[0-9]+-(.*)$", "my-app-$1");
        let plain = HostnameRule::default();
        let labels = |value: Value| json!({ "other": "x", "hostname-label": value });
        let cases: [(&HostnameRule, Option<&str>, Option<Value>, &str); 17] = [
            (&plain, Some("c1"), None, "c1"),
            (&plain, Some("/c1"), None, "c1"),
            (&plain, None, None, ""),
            (&plain, Some(""), None, ""),
            (&plain, Some("c1"), Some(labels(json!("seeone"))), "c1"),
            // Test 680, config 1: the match and replacement.
            (
                &app,
                Some("qiuds71y827hdi-seeone-1io9qd9i0wd"),
                None,
                "seeone",
            ),
            (&app, Some("124DJKSNK812-seetwo-128hbaJ881"), None, "seetwo"),
            (
                &app,
                Some("doesnotmatchpattern"),
                None,
                "doesnotmatchpattern",
            ),
            // Config 2: the label wins; an empty or missing one falls back to the name.
            (&label, Some("c1"), Some(labels(json!("seeone"))), "seeone"),
            (&label, Some("seetwo"), Some(labels(json!(""))), "seetwo"),
            (&label, Some("seetwo"), Some(labels(Value::Null)), "seetwo"),
            (
                &label,
                Some("seetwo"),
                Some(json!({"other": "x"})),
                "seetwo",
            ),
            (&label, Some("seetwo"), Some(Value::Null), "seetwo"),
            (&label, Some("seetwo"), None, "seetwo"),
            // Config 3: both, applied to the label.
            (
                &both,
                Some("c1"),
                Some(labels(json!("qiuds71y827hdi-seeone-1io9qd9i0wd"))),
                "seeone",
            ),
            (
                &both,
                Some("124DJKSNK812-seetwo-128hbaJ881"),
                None,
                "seetwo",
            ),
            // The documented example.
            (&aws, Some("aws-12798186823-foo"), None, "my-app-foo"),
        ];
        for (rule, name, labels, want) in cases {
            let got = rule.derive(name, labels.as_ref());
            assert_eq!(got.as_deref(), Ok(want), "{rule:?} {name:?} {labels:?}");
        }
    }

    #[test]
    fn labels_of_the_wrong_type_are_errors_only_when_a_label_is_asked_for() {
        let label = rule(Some("h"), DEFAULT_MATCH, DEFAULT_REPLACEMENT);
        let plain = HostnameRule::default();
        let cases = [
            (
                json!({"h": 1}),
                NamingError::LabelNotString { label: "h".into() },
            ),
            (
                json!({"h": ["a"]}),
                NamingError::LabelNotString { label: "h".into() },
            ),
            (json!(["h=a"]), NamingError::LabelsNotObject),
            (json!("h=a"), NamingError::LabelsNotObject),
        ];
        for (labels, want) in cases {
            assert_eq!(
                label.derive(Some("c1"), Some(&labels)),
                Err(want),
                "{labels}"
            );
            assert_eq!(plain.derive(Some("c1"), Some(&labels)).unwrap(), "c1");
        }
        assert_eq!(
            NamingError::LabelNotString { label: "h".into() }.to_string(),
            "label \"h\" (--hostname-from-label) must be a string"
        );
    }

    #[test]
    fn bad_patterns_are_named_in_one_line() {
        let err = HostnameRule::new(None, "(unclosed", "$1").unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("\"(unclosed\" is not a valid regular expression: "),
            "{text}"
        );
        assert!(text.contains("without closing ')'"), "{text}");
        assert!(!text.contains('\n'), "{text}");
    }

    #[test]
    fn rules_compare_by_their_flags() {
        assert_eq!(
            HostnameRule::default(),
            rule(None, DEFAULT_MATCH, DEFAULT_REPLACEMENT)
        );
        assert_ne!(
            HostnameRule::default(),
            rule(Some("l"), DEFAULT_MATCH, "$1")
        );
        assert_ne!(HostnameRule::default(), rule(None, "(.+)", "$1"));
        assert_ne!(HostnameRule::default(), rule(None, DEFAULT_MATCH, "${1}"));
    }

    fn weave_dns() -> Dns {
        Dns {
            domain: "weave.local.".into(),
            server: "172.17.0.1".parse().unwrap(),
        }
    }

    fn apply(body: Value, derived: &str) -> (Value, Option<String>) {
        let mut body = body.as_object().unwrap().clone();
        let warning = apply_dns(&mut body, derived, &weave_dns()).unwrap();
        (Value::Object(body), warning)
    }

    #[test]
    fn dns_settings_name_the_container_and_point_it_at_weavedns() {
        let long = "a".repeat(MAX_FQDN - "weave.local".len());
        let fits = "a".repeat(MAX_FQDN - 1 - "weave.local".len());
        let cases = [
            (
                "unnamed: no hostname, the weave domain searched",
                json!({"Image": "x"}),
                "",
                json!({"Image": "x", "HostConfig": {"Dns": ["172.17.0.1"], "DnsSearch": ["weave.local."]}}),
            ),
            (
                "named: hostname and domain, the weave domain searched",
                json!({"Hostname": "", "HostConfig": null}),
                "c1",
                json!({"Hostname": "c1", "Domainname": "weave.local", "HostConfig": {"Dns": ["172.17.0.1"], "DnsSearch": ["weave.local."]}}),
            ),
            (
                "the user's servers first, the user's search kept",
                json!({"HostConfig": {"Dns": ["8.8.8.8"], "DnsSearch": ["example.com"], "Memory": 0}}),
                "c1",
                json!({"HostConfig": {"Dns": ["8.8.8.8", "172.17.0.1"], "DnsSearch": ["example.com"], "Memory": 0}, "Hostname": "c1", "Domainname": "weave.local"}),
            ),
            (
                "weaveDNS not listed twice; empty and null search lists count as unset",
                json!({"HostConfig": {"Dns": ["172.17.0.1"], "DnsSearch": []}}),
                "",
                json!({"HostConfig": {"Dns": ["172.17.0.1"], "DnsSearch": ["weave.local."]}}),
            ),
            (
                "null lists",
                json!({"HostConfig": {"Dns": null, "DnsSearch": null}}),
                "",
                json!({"HostConfig": {"Dns": ["172.17.0.1"], "DnsSearch": ["weave.local."]}}),
            ),
            (
                "-h x.weave.local with a name: the user's hostname, '.' as in Weave Net",
                json!({"Hostname": "seetwo.weave.local"}),
                "c2",
                json!({"Hostname": "seetwo.weave.local", "HostConfig": {"Dns": ["172.17.0.1"], "DnsSearch": ["."]}}),
            ),
            (
                "-h x.weave.local without a name: the weave domain, as in Weave Net",
                json!({"Hostname": "seetwo.weave.local"}),
                "",
                json!({"Hostname": "seetwo.weave.local", "HostConfig": {"Dns": ["172.17.0.1"], "DnsSearch": ["weave.local."]}}),
            ),
            (
                "-h short with a name: no domain for '.' to fall back on",
                json!({"Hostname": "short"}),
                "c2",
                json!({"Hostname": "short", "HostConfig": {"Dns": ["172.17.0.1"], "DnsSearch": ["weave.local."]}}),
            ),
            (
                "a name that just fits",
                json!({}),
                fits.as_str(),
                json!({"Hostname": fits, "Domainname": "weave.local", "HostConfig": {"Dns": ["172.17.0.1"], "DnsSearch": ["weave.local."]}}),
            ),
            (
                "a name too long: Docker's hostname, the weave domain searched",
                json!({}),
                long.as_str(),
                json!({"HostConfig": {"Dns": ["172.17.0.1"], "DnsSearch": ["weave.local."]}}),
            ),
        ];
        for (what, body, derived, want) in cases {
            let (got, warning) = apply(body, derived);
            assert_eq!(got, want, "{what}");
            assert_eq!(warning.is_some(), derived == long, "{what}: {warning:?}");
        }
    }

    #[test]
    fn the_length_warning_says_what_was_not_set() {
        let long = "a".repeat(60);
        let (_, warning) = apply(json!({}), &long);
        assert_eq!(
            warning.unwrap(),
            format!(
                "hostname \"{long}\" with domain \"weave.local\" is longer than 64 characters; \
                 the container keeps Docker's hostname"
            )
        );
    }

    #[test]
    fn a_domain_without_trailing_dot_and_an_ipv6_server_work_too() {
        let dns = Dns {
            domain: "corp.internal".into(),
            server: "fd00::1".parse().unwrap(),
        };
        let mut body = json!({"HostConfig": {"Dns": ["fd00:0::1"]}})
            .as_object()
            .unwrap()
            .clone();
        apply_dns(&mut body, "", &dns).unwrap();
        assert_eq!(
            Value::Object(body),
            json!({"HostConfig": {"Dns": ["fd00:0::1"], "DnsSearch": ["corp.internal"]}})
        );
    }

    #[test]
    fn wrong_types_leave_the_body_untouched() {
        let bodies = [
            json!({"Hostname": 1}),
            json!({"Domainname": false}),
            json!({"HostConfig": []}),
            json!({"HostConfig": {"Dns": "8.8.8.8"}}),
            json!({"HostConfig": {"Dns": [1]}}),
            json!({"HostConfig": {"DnsSearch": {}}}),
            json!({"HostConfig": {"DnsSearch": "example.com"}}),
        ];
        for body in bodies {
            let mut object = body.as_object().unwrap().clone();
            assert!(
                apply_dns(&mut object, "c1", &weave_dns()).is_err(),
                "{body}"
            );
            assert_eq!(Value::Object(object), body);
        }
    }

    #[test]
    fn search_lists_follow_the_hostname_the_container_gets() {
        // (derived, Hostname, want): a derived name `c1` becomes hostname `c1` (no dot), so the
        // weave domain must be searched for `ping web` to work in it.
        let cases = [
            ("", "", "weave.local."),
            ("c1", "c1", "weave.local."),
            ("c1", "x.weave.local", "."),
            ("c1", "x.corp.example", "."),
            ("", "x.weave.local", "weave.local."),
            ("c1", "x", "weave.local."),
            ("c1", "x.", "weave.local."),
            ("c1", "", "weave.local."),
        ];
        for (derived, hostname, want) in cases {
            assert_eq!(
                search_list(derived, hostname, "weave.local."),
                [want],
                "{derived:?} {hostname:?}"
            );
        }
    }
}
