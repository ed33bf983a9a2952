//! The image configs that creates read (`Entrypoint`, `Cmd`, `Env`), cached so that a
//! `POST /containers/create` does not inspect its image every time.
//!
//! # Why it is never stale
//!
//! Two maps, with different rules:
//!
//! - **Image Id → config.** An image's Id is the digest of its config, so the config of an Id
//!   never changes: these entries are never invalidated, only dropped to bound the size.
//! - **Reference (`busybox:latest`, as the client wrote it) → Id.** A name can be re-pointed at
//!   any moment (`docker build -t`, `tag`, `pull`, `load`, `import`, `rmi`, `commit`). These
//!   entries are only kept while the proxy follows Docker's events stream, and **every** event
//!   that can re-point a name drops **all** of them (see [`invalidates_names`]): image events
//!   are rare beside creates, so matching each event to the names it touches (`busybox` is
//!   `docker.io/library/busybox:latest`, a pull names a reference, an untag an Id) would buy
//!   little and could be wrong. When the stream breaks or reconnects, events may have been
//!   missed, so the names are dropped then too, and none are kept until it is followed again.
//! - **A lookup that raced an invalidation is not kept.** Each miss carries the generation it
//!   started in ([`Ticket`]); every invalidation bumps it, so an inspect that was answered
//!   before a re-tag but stored after the re-tag's event cannot bring the old Id back.
//!
//! - **No name is trusted while a change goes through the proxy.** The events stream tells of a
//!   re-tag a moment after the daemon made it; a client that re-tags (or builds, pulls, loads)
//!   through this proxy and creates at once could fall in between. So such requests
//!   ([`crate::route::Endpoint::ImageChange`]) hold a [`ChangeGuard`] until the end of their
//!   answer: while one is in flight names are neither used nor learnt, and all are forgotten at
//!   its start and end.
//!
//! What remains: a change made straight on the daemon (not through this proxy) reaches the
//! cache with the event's delivery, a moment (the same socket's latency) after that client saw
//! its answer. Only a create through the proxy from another client inside that moment can get
//! the old config; between two clients that do not wait for each other, either order is
//! possible anyway.
//!
//! Size: at most [`MAX_IMAGES`] configs and [`MAX_NAMES`] names; when either is full the cache
//! starts over, which costs one inspect per image and is never wrong.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::intercept::create::ImageCommand;
use crate::sync::lock;

/// Image configs kept at most.
pub const MAX_IMAGES: usize = 256;
/// References kept at most.
pub const MAX_NAMES: usize = 1024;

/// Image configs by Id and references by name, shared by the creates and the events watcher;
/// cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct ImageCache {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    /// Image Id (`sha256:…`) → its config.
    configs: HashMap<String, Arc<ImageCommand>>,
    /// Reference as the client wrote it → image Id, valid while `following`.
    names: HashMap<String, String>,
    /// Bumped by every invalidation; a lookup started in an older one is not stored.
    generation: u64,
    /// Whether the events stream is followed now: names are cached only then.
    following: bool,
    /// Requests through this proxy that may re-point a name, in flight: no name is trusted
    /// meanwhile. The events stream tells of such a change a moment after the daemon made it;
    /// a client that re-tags through the proxy and creates at once must not fall in between.
    changing: usize,
}

/// A miss, to be handed back with the inspect's answer: the generation it started in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    generation: u64,
    following: bool,
}

impl ImageCache {
    /// The config `reference` names, if known to be current; else a ticket for
    /// [`ImageCache::insert`].
    pub fn get(&self, reference: &str) -> Result<Arc<ImageCommand>, Ticket> {
        let state = lock(&self.state);
        let id = match image_id(reference) {
            Some(id) => Some(id),
            None if state.following && state.changing == 0 => state.names.get(reference).cloned(),
            None => None,
        };
        match id.and_then(|id| state.configs.get(&id)) {
            Some(config) => Ok(Arc::clone(config)),
            None => Err(Ticket {
                generation: state.generation,
                following: state.following,
            }),
        }
    }

    /// Stores what an inspect of `reference` answered: Id `id`, config `config`. The name is
    /// kept only when nothing could have re-pointed it since `ticket` was handed out.
    pub fn insert(&self, ticket: Ticket, reference: &str, id: &str, config: Arc<ImageCommand>) {
        let mut state = lock(&self.state);
        if state.configs.len() >= MAX_IMAGES || state.names.len() >= MAX_NAMES {
            state.configs.clear();
            state.names.clear();
        }
        state.configs.insert(id.to_owned(), config);
        let current = Ticket {
            generation: state.generation,
            following: state.following,
        };
        if image_id(reference).is_none()
            && !may_be_id_prefix(reference)
            && state.changing == 0
            && may_keep_name(ticket, current)
        {
            state.names.insert(reference.to_owned(), id.to_owned());
        }
    }

    /// A name may have been re-pointed: forget every name.
    pub fn invalidate_names(&self) {
        let mut state = lock(&self.state);
        state.names.clear();
        state.generation += 1;
    }

    /// A request that may re-point a name is on its way through the proxy: no name is trusted
    /// until the returned guard is dropped (with the end of its answer), and every name is
    /// forgotten then too, as at the start.
    pub fn begin_change(&self) -> ChangeGuard {
        let mut state = lock(&self.state);
        state.changing += 1;
        state.names.clear();
        state.generation += 1;
        ChangeGuard {
            cache: self.clone(),
        }
    }

    /// The events stream is followed from now on (`true`), or no longer (`false`). Either way
    /// events may have been missed in between, so every name is forgotten.
    pub fn set_following(&self, following: bool) {
        let mut state = lock(&self.state);
        state.names.clear();
        state.generation += 1;
        state.following = following;
    }
}

/// An image-changing request in flight (see [`ImageCache::begin_change`]).
#[derive(Debug)]
pub struct ChangeGuard {
    cache: ImageCache,
}

impl Drop for ChangeGuard {
    fn drop(&mut self) {
        let mut state = lock(&self.cache.state);
        state.changing = state.changing.saturating_sub(1);
        state.names.clear();
        state.generation += 1;
    }
}

/// Whether a name looked up under `ticket` may be stored now, in `current`: only when the
/// events stream was followed throughout and nothing invalidated the names in between.
pub fn may_keep_name(ticket: Ticket, current: Ticket) -> bool {
    ticket.following && current.following && ticket.generation == current.generation
}

/// Whether a Docker event (its `Type` and `Action`) can change which image a name means. Any
/// image event but those known to leave names alone, so that an action added by a later Docker
/// errs on the safe side; and a container's `commit`, which may tag its new image.
pub fn invalidates_names(typ: &str, action: &str) -> bool {
    match typ {
        "image" => !matches!(action, "push" | "save"),
        "container" => action == "commit",
        _ => false,
    }
}

/// The Docker event actions that [`invalidates_names`] acts on, for the events filter (which
/// cannot be per type). `create` is what the containerd image store says for a new name.
pub const IMAGE_ACTIONS: [&str; 9] = [
    "tag", "untag", "delete", "pull", "load", "import", "prune", "create", "commit",
];

/// The Id a reference is, when it is a full image Id (`sha256:<64 hex>` or the 64 hex digits
/// alone, which Docker never reads as a name), as `sha256:<hex>`; names are `None`.
pub fn image_id(reference: &str) -> Option<String> {
    let hex = reference.strip_prefix("sha256:").unwrap_or(reference);
    let is_id = hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    is_id.then(|| format!("sha256:{hex}"))
}

/// Whether the daemon may read `reference` as the prefix of an Id (it does when no name
/// matches): which image that is changes when an image is built without a name, which no event
/// announces, so such a reference is never cached by name.
pub fn may_be_id_prefix(reference: &str) -> bool {
    let hex = reference.strip_prefix("sha256:").unwrap_or(reference);
    !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn config(cmd: &str) -> Arc<ImageCommand> {
        Arc::new(ImageCommand {
            cmd: Some(vec![cmd.to_owned()]),
            ..ImageCommand::default()
        })
    }

    #[test]
    fn only_full_ids_are_ids() {
        let sha = format!("sha256:{HEX}");
        let cases = [
            (HEX, Some(sha.as_str())),
            (sha.as_str(), Some(sha.as_str())),
            ("busybox", None),
            ("busybox:latest", None),
            ("0123456789ab", None),
            (&HEX[1..], None),
            ("sha256:0123", None),
            ("busybox@sha256:0123", None),
        ];
        for (reference, want) in cases {
            assert_eq!(image_id(reference).as_deref(), want, "{reference}");
        }
        assert_eq!(image_id(&HEX.to_uppercase()), None);
    }

    #[test]
    fn which_events_can_repoint_a_name() {
        let cases = [
            ("image", "tag", true),
            ("image", "untag", true),
            ("image", "delete", true),
            ("image", "pull", true),
            ("image", "load", true),
            ("image", "import", true),
            ("image", "prune", true),
            ("image", "create", true),
            ("image", "something-new", true),
            ("image", "push", false),
            ("image", "save", false),
            ("container", "commit", true),
            ("container", "start", false),
            ("container", "destroy", false),
            ("network", "create", false),
        ];
        for (typ, action, want) in cases {
            assert_eq!(invalidates_names(typ, action), want, "{typ} {action}");
        }
        let prefixes = [
            ("abc123", true),
            ("sha256:abc1", true),
            ("deadbeef", true),
            ("busybox", false),
            ("abc123:latest", false),
            ("", false),
        ];
        for (reference, want) in prefixes {
            assert_eq!(may_be_id_prefix(reference), want, "{reference}");
        }
        for action in IMAGE_ACTIONS {
            let typ = if action == "commit" {
                "container"
            } else {
                "image"
            };
            assert!(invalidates_names(typ, action), "{action}");
        }
    }

    #[test]
    fn a_name_is_kept_only_if_nothing_happened_meanwhile() {
        let t = |generation, following| Ticket {
            generation,
            following,
        };
        let cases = [
            (t(3, true), t(3, true), true),
            (t(3, true), t(4, true), false),
            (t(3, false), t(3, true), false),
            (t(3, true), t(3, false), false),
            (t(3, false), t(3, false), false),
        ];
        for (ticket, current, want) in cases {
            assert_eq!(
                may_keep_name(ticket, current),
                want,
                "{ticket:?} {current:?}"
            );
        }
    }

    #[test]
    fn names_live_from_one_event_to_the_next() {
        let cache = ImageCache::default();
        let a = format!("sha256:{HEX}");
        // Not following events: the config is kept by Id, the name is not.
        let ticket = cache.get("app:v1").unwrap_err();
        cache.insert(ticket, "app:v1", &a, config("a"));
        assert!(cache.get("app:v1").is_err());
        assert_eq!(cache.get(&a).unwrap().cmd, config("a").cmd);

        cache.set_following(true);
        let ticket = cache.get("app:v1").unwrap_err();
        cache.insert(ticket, "app:v1", &a, config("a"));
        assert!(cache.get("app:v1").is_ok());

        // A re-tag's event drops it.
        cache.invalidate_names();
        assert!(cache.get("app:v1").is_err());

        // An inspect answered before an invalidation is not stored after it.
        let ticket = cache.get("app:v1").unwrap_err();
        cache.invalidate_names();
        cache.insert(ticket, "app:v1", &a, config("a"));
        assert!(cache.get("app:v1").is_err());

        // A broken stream drops the names and keeps none until it is followed again.
        let ticket = cache.get("app:v1").unwrap_err();
        cache.insert(ticket, "app:v1", &a, config("a"));
        cache.set_following(false);
        assert!(cache.get("app:v1").is_err());
        assert!(cache.get(&a).is_ok(), "an Id stays valid");
    }

    #[test]
    fn no_name_is_trusted_while_a_change_goes_through_the_proxy() {
        let cache = ImageCache::default();
        let a = format!("sha256:{HEX}");
        cache.set_following(true);
        let ticket = cache.get("app:v1").unwrap_err();
        cache.insert(ticket, "app:v1", &a, config("a"));
        assert!(cache.get("app:v1").is_ok());

        let first = cache.begin_change();
        let second = cache.begin_change();
        assert!(
            cache.get("app:v1").is_err(),
            "forgotten when a change begins"
        );
        // Nothing is learnt by name while changes are in flight, nor from a lookup made then.
        let during = cache.get("app:v1").unwrap_err();
        cache.insert(during, "app:v1", &a, config("a"));
        assert!(cache.get("app:v1").is_err());
        drop(first);
        let ticket = cache.get("app:v1").unwrap_err();
        cache.insert(ticket, "app:v1", &a, config("a"));
        assert!(
            cache.get("app:v1").is_err(),
            "one change is still in flight"
        );
        drop(second);
        assert!(
            cache.get("app:v1").is_err(),
            "and nothing from before it ended"
        );
        let ticket = cache.get("app:v1").unwrap_err();
        cache.insert(ticket, "app:v1", &a, config("a"));
        assert!(cache.get("app:v1").is_ok(), "names are trusted again after");
        assert!(cache.get(&a).is_ok(), "an Id is trusted throughout");
    }

    #[test]
    fn the_size_is_bounded() {
        let cache = ImageCache::default();
        cache.set_following(true);
        for i in 0..MAX_IMAGES * 3 {
            let ticket = cache.get(&format!("app:{i}")).unwrap_err();
            cache.insert(ticket, &format!("app:{i}"), &format!("id{i}"), config("x"));
        }
        let state = lock(&cache.state);
        assert!(state.configs.len() <= MAX_IMAGES && state.names.len() <= MAX_NAMES);
        assert!(!state.configs.is_empty());
    }
}
