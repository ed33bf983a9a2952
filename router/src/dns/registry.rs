//! The weaveDNS name registry: which container registered which name for which address. In
//! memory, no I/O; shared (cheaply cloned) between the HTTP API, the Docker events watcher and the
//! DNS server.
//!
//! Names are kept lowercase with one trailing dot, so every lookup is case-insensitive and takes
//! a name with or without its final dot. Only names under the domain are kept: weaveDNS answers
//! for its domain alone and forwards everything else, so a name outside it could never be found.
//!
//! The original tombstones removed entries and gossips them to its peers. Here removal deletes:
//! on a network of several hosts each peer's own records are mirrored through the store
//! ([`crate::mesh`]), which keeps the other peers' records here under their origin. Only a
//! record's own peer changes it: local calls (`add`, `remove`, ...) touch local records alone,
//! and every change to those is announced to [`Registry::changes`].

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use serde::Serialize;

use crate::mesh::keys::DnsRecord;

/// What `GET /name` reports as the origin of every entry: the peer that made it, in the original.
pub const ORIGIN: &str = "weaver";

/// One name, in the JSON shape of Weave Net's `GET /name`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    #[serde(rename = "ContainerID")]
    pub container_id: String,
    #[serde(rename = "Origin")]
    pub origin: String,
    #[serde(rename = "Addr")]
    pub addr: Ipv4Addr,
    /// Lowercase, with the trailing dot.
    #[serde(rename = "Hostname")]
    pub hostname: String,
    /// Gossip bookkeeping in the original; always 0 here.
    #[serde(rename = "Version")]
    pub version: u64,
    /// Always 0: removed entries are deleted, not tombstoned.
    #[serde(rename = "Tombstone")]
    pub tombstone: u64,
}

/// The names, shared: clones see the same entries.
#[derive(Debug, Clone)]
pub struct Registry {
    domain: Arc<str>,
    entries: Arc<Mutex<Vec<Stored>>>,
    /// Bumped on every change to local records, so the store mirror wakes up.
    changes: Arc<tokio::sync::watch::Sender<u64>>,
}

#[derive(Debug, Clone)]
struct Stored {
    container: String,
    addr: Ipv4Addr,
    fqdn: String,
    /// When the name was last registered, so that a late `die` event does not take away a name
    /// that the container's restart registered again after it died.
    registered: SystemTime,
    /// The peer that owns a record another peer made; `None` for this host's own.
    origin: Option<Arc<str>>,
}

impl Registry {
    /// An empty registry for `domain` (normalised: lowercase, one trailing dot).
    pub fn new(domain: &str) -> Self {
        Self {
            domain: normalise(domain).into(),
            entries: Arc::default(),
            changes: Arc::new(tokio::sync::watch::channel(0).0),
        }
    }

    /// Wakes up after each change to this host's own records.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// This host's own records, each once.
    pub fn local_records(&self) -> Vec<DnsRecord> {
        let mut records: Vec<DnsRecord> = self
            .lock()
            .iter()
            .filter(|e| e.origin.is_none())
            .map(Stored::record)
            .collect();
        records.sort();
        records.dedup();
        records
    }

    /// Adds a record another peer made (kept until that peer removes it).
    pub fn add_remote(&self, origin: &str, record: &DnsRecord) {
        let fqdn = normalise(&record.fqdn);
        if !is_under(&fqdn, &self.domain) {
            return;
        }
        let mut entries = self.lock();
        let exists = entries.iter().any(|e| {
            e.origin.as_deref() == Some(origin)
                && e.container == record.container
                && e.addr == record.addr
                && e.fqdn == fqdn
        });
        if !exists {
            entries.push(Stored {
                container: record.container.clone(),
                addr: record.addr,
                fqdn,
                registered: SystemTime::now(),
                origin: Some(origin.into()),
            });
        }
    }

    /// Removes a record another peer made.
    pub fn remove_remote(&self, origin: &str, record: &DnsRecord) {
        let fqdn = normalise(&record.fqdn);
        self.lock().retain(|e| {
            !(e.origin.as_deref() == Some(origin)
                && e.container == record.container
                && e.addr == record.addr
                && e.fqdn == fqdn)
        });
    }

    /// Replaces every record of other peers with `records` (peer, record): after a re-list.
    pub fn replace_remote(&self, records: &[(String, DnsRecord)]) {
        self.lock().retain(|e| e.origin.is_none());
        for (origin, record) in records {
            self.add_remote(origin, record);
        }
    }

    /// The domain, lowercase with its trailing dot (`weave.local.`).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Registers `fqdn` for `container` at `addr`. Registering the same triple again keeps one
    /// entry (and counts as registered now).
    ///
    /// Returns false, and keeps nothing, when the name is not under the domain; the HTTP API still
    /// answers 204 then, as the original does.
    pub fn add(&self, container: &str, addr: Ipv4Addr, fqdn: &str) -> bool {
        self.add_at(container, addr, fqdn, SystemTime::now())
    }

    fn add_at(&self, container: &str, addr: Ipv4Addr, fqdn: &str, now: SystemTime) -> bool {
        let fqdn = normalise(fqdn);
        if !is_under(&fqdn, &self.domain) {
            return false;
        }
        let mut entries = self.lock();
        match entries.iter_mut().find(|e| {
            e.origin.is_none() && e.container == container && e.addr == addr && e.fqdn == fqdn
        }) {
            Some(existing) => existing.registered = now,
            None => {
                entries.push(Stored {
                    container: container.to_owned(),
                    addr,
                    fqdn,
                    registered: now,
                    origin: None,
                });
                drop(entries);
                self.changed();
            }
        }
        true
    }

    /// Removes the entries that match every given part; `None` matches anything. Returns how many
    /// went.
    pub fn remove(
        &self,
        container: Option<&str>,
        addr: Option<Ipv4Addr>,
        fqdn: Option<&str>,
    ) -> usize {
        let fqdn = fqdn.map(normalise);
        self.remove_where(|e| {
            container.is_none_or(|c| e.container == c)
                && addr.is_none_or(|a| e.addr == a)
                && fqdn.as_deref().is_none_or(|f| e.fqdn == f)
        })
    }

    /// Removes the names of `container` registered at or before `at` (when the container died),
    /// keeping those its restart registered since. Returns how many went.
    pub fn remove_registered_before(&self, container: &str, at: SystemTime) -> usize {
        self.remove_where(|e| e.container == container && e.registered <= at)
    }

    /// The addresses registered for `name` (any case, final dot optional), oldest first, each once.
    pub fn lookup(&self, name: &str) -> Vec<Ipv4Addr> {
        let name = normalise(name);
        let mut addrs = Vec::new();
        for entry in self.lock().iter().filter(|e| e.fqdn == name) {
            if !addrs.contains(&entry.addr) {
                addrs.push(entry.addr);
            }
        }
        addrs
    }

    /// Whether `name` (any case, final dot optional) is the domain or a name under it: what
    /// weaveDNS answers for itself instead of forwarding.
    pub fn owns(&self, name: &str) -> bool {
        let name = normalise(name);
        *name == *self.domain || is_under(&name, &self.domain)
    }

    /// Whether some registered name lies strictly below `name`, which then exists (as an empty
    /// non-terminal) even without addresses of its own.
    pub fn has_names_below(&self, name: &str) -> bool {
        let name = normalise(name);
        self.lock()
            .iter()
            .any(|e| e.fqdn.len() > name.len() && is_under(&e.fqdn, &name))
    }

    /// The name (with its trailing dot) of the oldest entry for `addr`.
    pub fn reverse(&self, addr: Ipv4Addr) -> Option<String> {
        self.lock()
            .iter()
            .find(|e| e.addr == addr)
            .map(|e| e.fqdn.clone())
    }

    /// Every entry, oldest first.
    pub fn entries(&self) -> Vec<Entry> {
        self.lock()
            .iter()
            .map(|e| Entry {
                container_id: e.container.clone(),
                origin: e.origin.as_deref().unwrap_or(ORIGIN).to_owned(),
                addr: e.addr,
                hostname: e.fqdn.clone(),
                version: 0,
                tombstone: 0,
            })
            .collect()
    }

    /// The ids of this host's containers that have names, each once, in the order they first registered.
    pub fn containers(&self) -> Vec<String> {
        let mut ids: Vec<String> = Vec::new();
        for entry in self.lock().iter().filter(|e| e.origin.is_none()) {
            if !ids.contains(&entry.container) {
                ids.push(entry.container.clone());
            }
        }
        ids
    }

    /// Removes local records only: another peer's are that peer's to remove.
    fn remove_where(&self, doomed: impl Fn(&Stored) -> bool) -> usize {
        let mut entries = self.lock();
        let before = entries.len();
        entries.retain(|e| e.origin.is_some() || !doomed(e));
        let removed = before - entries.len();
        drop(entries);
        if removed > 0 {
            self.changed();
        }
        removed
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Stored>> {
        // The critical sections cannot leave the list half-changed, so a panic elsewhere while the
        // lock was held does not make the entries wrong.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Stored {
    fn record(&self) -> DnsRecord {
        DnsRecord {
            container: self.container.clone(),
            addr: self.addr,
            fqdn: self.fqdn.clone(),
        }
    }
}

/// `name` trimmed, lowercase, with exactly one trailing dot (the root is `.`).
fn normalise(name: &str) -> String {
    let bare = name.trim().trim_end_matches('.');
    let mut out = bare.to_ascii_lowercase();
    out.push('.');
    out
}

/// Whether the normalised `name` is a proper name under the normalised `domain`: at least one
/// non-empty label before it, and no empty label anywhere.
fn is_under(name: &str, domain: &str) -> bool {
    let Some(labels) = name.strip_suffix(domain) else {
        return false;
    };
    // With the root as the domain the dot before it is the one that was stripped.
    let labels = if domain == "." {
        labels
    } else {
        match labels.strip_suffix('.') {
            Some(labels) => labels,
            None => return false,
        }
    };
    !labels.is_empty() && labels.split('.').all(|label| !label.is_empty())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const C1: &str = "c1id";
    const C2: &str = "c2id";

    fn ip(text: &str) -> Ipv4Addr {
        text.parse().unwrap()
    }

    #[test]
    fn domains_are_normalised() {
        let cases = [
            ("weave.local", "weave.local."),
            ("weave.local.", "weave.local."),
            ("Weave.Local..", "weave.local."),
            (" example.test ", "example.test."),
            ("", "."),
        ];
        for (given, want) in cases {
            assert_eq!(Registry::new(given).domain(), want, "domain {given:?}");
        }
    }

    #[test]
    fn only_names_under_the_domain_are_kept() {
        let cases = [
            ("c1.weave.local", true),
            ("c1.weave.local.", true),
            ("C1.Weave.LOCAL.", true),
            ("a.b.weave.local.", true),
            ("weave.local.", false),
            ("weave.local", false),
            (".weave.local.", false),
            ("a..weave.local.", false),
            ("c1weave.local.", false),
            ("c1.weave.localx.", false),
            ("c1.example.test.", false),
            ("c1", false),
            ("", false),
        ];
        for (fqdn, kept) in cases {
            let registry = Registry::new("weave.local.");
            assert_eq!(
                registry.add(C1, ip("10.32.0.1"), fqdn),
                kept,
                "fqdn {fqdn:?}"
            );
            assert_eq!(registry.entries().len(), usize::from(kept), "fqdn {fqdn:?}");
        }
    }

    #[test]
    fn the_root_domain_takes_any_name() {
        let registry = Registry::new(".");
        assert!(registry.add(C1, ip("10.32.0.1"), "c1"));
        assert!(!registry.add(C1, ip("10.32.0.1"), "."));
        assert_eq!(registry.lookup("C1."), vec![ip("10.32.0.1")]);
    }

    #[test]
    fn adding_is_idempotent_and_stores_lowercase_with_a_dot() {
        let registry = Registry::new("weave.local");
        assert!(registry.add(C1, ip("10.32.0.1"), "C1.weave.local"));
        assert!(registry.add(C1, ip("10.32.0.1"), "c1.weave.local."));
        assert_eq!(
            registry.entries(),
            vec![Entry {
                container_id: C1.to_owned(),
                origin: ORIGIN.to_owned(),
                addr: ip("10.32.0.1"),
                hostname: "c1.weave.local.".to_owned(),
                version: 0,
                tombstone: 0,
            }]
        );
    }

    #[test]
    fn entries_serialise_in_the_original_shape() {
        let registry = Registry::new("weave.local.");
        registry.add(C1, ip("10.32.0.1"), "c1.weave.local.");
        let json = serde_json::to_value(registry.entries()).unwrap();
        assert_eq!(
            json,
            serde_json::json!([{
                "ContainerID": C1,
                "Origin": ORIGIN,
                "Addr": "10.32.0.1",
                "Hostname": "c1.weave.local.",
                "Version": 0,
                "Tombstone": 0,
            }])
        );
    }

    fn populated() -> Registry {
        let registry = Registry::new("weave.local.");
        registry.add(C1, ip("10.32.0.1"), "c1.weave.local.");
        registry.add(C1, ip("10.32.0.2"), "c1.weave.local.");
        registry.add(C1, ip("10.32.0.1"), "alias.weave.local.");
        registry.add(C2, ip("10.32.0.3"), "c2.weave.local.");
        registry.add(C2, ip("10.32.0.3"), "c1.weave.local.");
        registry
    }

    #[test]
    fn lookups_ignore_case_and_the_final_dot() {
        let registry = populated();
        let all_c1 = vec![ip("10.32.0.1"), ip("10.32.0.2"), ip("10.32.0.3")];
        let cases: [(&str, Vec<Ipv4Addr>); 7] = [
            ("c1.weave.local.", all_c1.clone()),
            ("C1.WEAVE.LOCAL", all_c1),
            ("alias.weave.local", vec![ip("10.32.0.1")]),
            ("c2.weave.local.", vec![ip("10.32.0.3")]),
            ("c3.weave.local.", vec![]),
            ("weave.local.", vec![]),
            ("c1", vec![]),
        ];
        for (name, want) in cases {
            assert_eq!(registry.lookup(name), want, "lookup {name:?}");
        }
    }

    #[test]
    fn the_same_address_under_two_containers_is_returned_once() {
        let registry = Registry::new("weave.local.");
        registry.add(C1, ip("10.32.0.1"), "web.weave.local.");
        registry.add(C2, ip("10.32.0.1"), "web.weave.local.");
        assert_eq!(registry.lookup("web.weave.local."), vec![ip("10.32.0.1")]);
    }

    #[test]
    fn the_domain_owns_itself_and_names_under_it() {
        let registry = Registry::new("weave.local.");
        let cases = [
            ("weave.local.", true),
            ("WEAVE.local", true),
            ("c1.weave.local.", true),
            ("a.b.weave.local", true),
            ("local.", false),
            ("xweave.local.", false),
            ("www.example.test.", false),
            ("1.0.32.10.in-addr.arpa.", false),
        ];
        for (name, want) in cases {
            assert_eq!(registry.owns(name), want, "name {name:?}");
        }
    }

    #[test]
    fn names_below_make_a_name_exist() {
        let registry = Registry::new("weave.local.");
        registry.add(C1, ip("10.32.0.1"), "a.b.weave.local.");
        let cases = [
            ("weave.local.", true),
            ("b.weave.local", true),
            ("B.Weave.Local.", true),
            ("a.b.weave.local.", false),
            ("c.weave.local.", false),
            ("ab.weave.local.", false),
        ];
        for (name, want) in cases {
            assert_eq!(registry.has_names_below(name), want, "name {name:?}");
        }
    }

    #[test]
    fn reverse_gives_the_oldest_name_for_an_address() {
        let registry = populated();
        let cases = [
            ("10.32.0.1", Some("c1.weave.local.")),
            ("10.32.0.2", Some("c1.weave.local.")),
            ("10.32.0.3", Some("c2.weave.local.")),
            ("10.32.0.9", None),
        ];
        for (addr, want) in cases {
            assert_eq!(registry.reverse(ip(addr)).as_deref(), want, "addr {addr}");
        }
    }

    #[test]
    fn removal_matches_every_given_part() {
        type Case<'a> = (Option<&'a str>, Option<&'a str>, Option<&'a str>, usize);
        let cases: [Case<'_>; 9] = [
            (None, None, None, 5),
            (Some(C1), None, None, 3),
            (Some(C2), None, None, 2),
            (Some("nobody"), None, None, 0),
            (Some(C1), Some("10.32.0.1"), None, 2),
            (Some(C1), Some("10.32.0.1"), Some("C1.Weave.Local"), 1),
            (None, None, Some("c1.weave.local."), 3),
            (None, Some("10.32.0.3"), None, 2),
            (Some(C2), Some("10.32.0.1"), None, 0),
        ];
        for (container, addr, fqdn, removed) in cases {
            let registry = populated();
            let got = registry.remove(container, addr.map(ip), fqdn);
            assert_eq!(got, removed, "remove {container:?} {addr:?} {fqdn:?}");
            assert_eq!(registry.entries().len(), 5 - removed);
        }
    }

    #[test]
    fn containers_are_listed_once_in_registration_order() {
        let registry = populated();
        assert_eq!(registry.containers(), vec![C1.to_owned(), C2.to_owned()]);
        registry.remove(Some(C1), None, None);
        assert_eq!(registry.containers(), vec![C2.to_owned()]);
    }

    #[test]
    fn clones_share_their_entries() {
        let registry = Registry::new("weave.local.");
        let clone = registry.clone();
        clone.add(C1, ip("10.32.0.1"), "c1.weave.local.");
        assert_eq!(registry.lookup("c1.weave.local."), vec![ip("10.32.0.1")]);
    }

    #[test]
    fn a_death_removes_only_names_registered_before_it() {
        let registry = Registry::new("weave.local.");
        registry.add(C1, ip("10.32.0.1"), "c1.weave.local.");
        registry.add(C2, ip("10.32.0.2"), "c2.weave.local.");
        let died = SystemTime::now();
        assert_eq!(
            registry.remove_registered_before(C1, died - Duration::from_secs(60)),
            0
        );
        assert_eq!(registry.remove_registered_before(C1, died), 1);
        assert_eq!(registry.lookup("c2.weave.local."), vec![ip("10.32.0.2")]);
    }

    #[test]
    fn registering_again_renews_a_name_against_an_older_death() {
        let registry = Registry::new("weave.local.");
        let died = SystemTime::now();
        registry.add_at(
            C1,
            ip("10.32.0.1"),
            "c1.weave.local.",
            died - Duration::from_secs(1),
        );
        registry.add_at(
            C1,
            ip("10.32.0.1"),
            "c1.weave.local.",
            died + Duration::from_secs(1),
        );
        assert_eq!(registry.remove_registered_before(C1, died), 0);
        assert_eq!(registry.lookup("c1.weave.local."), vec![ip("10.32.0.1")]);
    }

    #[test]
    fn other_peers_records_answer_but_only_their_peer_changes_them() {
        let registry = Registry::new("weave.local.");
        let mut changes = registry.changes();
        let remote = DnsRecord {
            container: "far".into(),
            addr: ip("10.32.0.65"),
            fqdn: "Web.weave.local".into(),
        };
        registry.add_remote("peer2", &remote);
        registry.add_remote("peer2", &remote);
        registry.add_remote(
            "peer2",
            &DnsRecord {
                fqdn: "x.other.".into(),
                ..remote.clone()
            },
        );
        assert!(
            !changes.has_changed().unwrap(),
            "remote records are not announced"
        );
        assert_eq!(registry.lookup("web.weave.local"), vec![ip("10.32.0.65")]);
        assert_eq!(registry.entries()[0].origin, "peer2");
        assert!(registry.local_records().is_empty());
        assert!(registry.containers().is_empty());
        // Local removal does not reach another peer's record.
        assert_eq!(registry.remove(Some("far"), None, None), 0);
        assert_eq!(
            registry.remove_registered_before("far", SystemTime::now()),
            0
        );

        registry.add(C1, ip("10.32.0.1"), "c1.weave.local.");
        assert!(changes.has_changed().unwrap());
        changes.mark_unchanged();
        registry.add(C1, ip("10.32.0.1"), "c1.weave.local.");
        assert!(
            !changes.has_changed().unwrap(),
            "re-registering changes nothing"
        );
        assert_eq!(registry.local_records().len(), 1);

        registry.replace_remote(&[]);
        assert!(registry.lookup("web.weave.local").is_empty());
        assert_eq!(registry.lookup("c1.weave.local"), vec![ip("10.32.0.1")]);
        registry.add_remote("peer2", &remote);
        registry.remove_remote("peer2", &remote);
        assert!(registry.lookup("web.weave.local").is_empty());
        registry.remove(Some(C1), None, None);
        assert!(changes.has_changed().unwrap());
    }
}
