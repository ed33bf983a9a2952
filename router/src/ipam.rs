//! The IP address allocator: who owns which address inside (and outside) `--ipalloc-range`. Pure, no I/O.
//!
//! This is Weave Net's allocator reduced to a single host: the whole range belongs to us, so there is
//! no ring, no consensus and no asking peers for space. What remains is the bookkeeping the HTTP API
//! exposes — lowest-free allocation, idempotent re-allocation, claims, frees — with the original's
//! error texts, because the `weave` script and the proxy show them to users verbatim.
//!
//! It also keeps the lifecycle of container-owned addresses (the original's `isContainer` entries,
//! made with `check-alive=true`): a container that dies is *marked dead* with a timestamp and keeps
//! its addresses for a grace period, so a restart gets the same ones back; marks older than the
//! grace period are freed by [`Allocator::expire_dead`]. Time is always passed in, so the rules are
//! tested with an injected clock.
//!
//! On a network of several hosts the range is cut into blocks (a /26 by default) that a host
//! claims in the store and then owns for good (MULTIHOST.md §4.2): [`Space::Blocks`]. Allocation
//! stays local and needs no store, but only inside owned blocks; when none has room the allocator
//! answers [`IpamError::NeedBlock`] and the caller claims one ([`crate::mesh`]).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;

/// A claim under [`NO_CONTAINER_ID`] is recorded under the address's own text, so
/// `DELETE /ip/<ip>` frees it.
pub use api::route::NO_CONTAINER_ID;

/// Why an allocator operation was refused. The texts are the original's where it had one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpamError {
    #[error("invalid CIDR address: {0}")]
    BadCidr(String),
    #[error("invalid IP address: {0}")]
    BadIp(String),
    #[error("invalid subnet - bits after network prefix are not all zero: {0}")]
    HostBitsSet(String),
    #[error("invalid subnet - smaller than minimum size 4: {0}")]
    SubnetTooSmall(Ipv4Net),
    #[error("default subnet {subnet} does not overlap with the allocation range {universe}")]
    DefaultSubnetOutside { subnet: Ipv4Net, universe: Ipv4Net },
    #[error("range {subnet} out of bounds: {universe}")]
    OutOfBounds { subnet: Ipv4Net, universe: Ipv4Net },
    /// The original blocks here until a peer donates space; a lone host never gets any, so we answer.
    #[error("no free address in {subnet}: all {hosts} host addresses are allocated")]
    Exhausted { subnet: Ipv4Net, hosts: u64 },
    #[error("address {0} is already owned by {1}")]
    OwnedBy(Ipv4Net, String),
    #[error("address {0} already in use")]
    InUse(Ipv4Net),
    #[error("address {0} already in use by {1}")]
    InUseBy(Ipv4Net, String),
    #[error("Delete: no addresses for {0}")]
    NoAddresses(String),
    #[error("Free: address {0} not found for {1}")]
    NotFound(Ipv4Addr, String),
    /// Every owned block that overlaps the subnet is full (or there is none): a block must be
    /// claimed in the store first. Never shown to a client as such.
    #[error("no free address in this peer's blocks of {0}")]
    NeedBlock(Ipv4Net),
    /// A claim inside the range, in a block this host does not own: the block must be claimed
    /// first (or it belongs to another peer).
    #[error("address {0} is in block {1}, which this peer does not own")]
    BlockNotOwned(Ipv4Net, Ipv4Net),
}

/// Which addresses of the range this host may give out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Space {
    /// All of them: the host is alone.
    Whole,
    /// Those in the blocks it owns: blocks of prefix length `len`, aligned in the range.
    Blocks { len: u8, owned: BTreeSet<Ipv4Net> },
}

/// What one id holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// Set when the address was asked for with `check-alive=true`; only such entries may later be
    /// released automatically when their container dies (the original's `isContainer`).
    pub is_container: bool,
    /// Addresses in the order they were given, each with the prefix length it was handed out with.
    pub cidrs: Vec<Ipv4Net>,
}

/// Parses `a.b.c.d/n` as a subnet to allocate in (the original's `ParseCIDRSubnet`): host bits
/// must be zero and the subnet must hold at least 4 addresses (network, broadcast and two hosts).
///
/// # Errors
/// [`IpamError::BadCidr`], [`IpamError::HostBitsSet`] or [`IpamError::SubnetTooSmall`].
pub fn parse_subnet(text: &str) -> Result<Ipv4Net, IpamError> {
    let net = parse_cidr(text)?;
    if net.addr() != net.network() {
        return Err(IpamError::HostBitsSet(text.to_owned()));
    }
    if net.prefix_len() > 30 {
        return Err(IpamError::SubnetTooSmall(net));
    }
    Ok(net)
}

/// Parses `a.b.c.d/n` keeping the host bits: an address together with its mask.
///
/// # Errors
/// [`IpamError::BadCidr`] for anything that is not an IPv4 CIDR.
pub fn parse_cidr(text: &str) -> Result<Ipv4Net, IpamError> {
    text.parse()
        .map_err(|_| IpamError::BadCidr(text.to_owned()))
}

/// Parses a bare IPv4 address.
///
/// # Errors
/// [`IpamError::BadIp`].
pub fn parse_ip(text: &str) -> Result<Ipv4Addr, IpamError> {
    text.parse().map_err(|_| IpamError::BadIp(text.to_owned()))
}

/// The allocator state: the range, the default subnet and every owned address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocator {
    universe: Ipv4Net,
    default_subnet: Ipv4Net,
    owners: BTreeMap<String, Owner>,
    /// Reverse index: every owned address (inside or outside the range) → its owner id. Ordered, so
    /// the lowest free address is found by walking the used ones rather than every candidate.
    used: BTreeMap<Ipv4Addr, String>,
    /// Container ids whose container died, with when. Only ids present in `owners` with
    /// `is_container` are ever marked. Not persisted: at start the reclaim decides afresh.
    dead: BTreeMap<String, Instant>,
    space: Space,
}

/// Addresses released by a lifecycle rule, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Released {
    pub id: String,
    pub cidrs: Vec<Ipv4Net>,
}

/// What [`Allocator::sync_running`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Container ids newly marked dead because their container is not running.
    pub marked_dead: Vec<String>,
    /// Container ids whose dead mark was lifted because their container runs again.
    pub revived: Vec<String>,
}

/// What [`Allocator::reclaim`] did at start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReclaimReport {
    /// Container entries freed because their container is not running any more.
    pub pruned: Vec<Released>,
    /// Addresses found on running containers' `ethwe` and recorded (or confirmed) for them.
    pub claimed: usize,
    /// Addresses found on a running container that another live id already holds.
    pub conflicts: Vec<(String, Ipv4Net, IpamError)>,
}

impl Allocator {
    /// An empty allocator over `universe` whose plain allocations go to `default_subnet`.
    ///
    /// # Errors
    /// [`IpamError::DefaultSubnetOutside`] when the two do not overlap (the original exits fatally).
    pub fn new(universe: Ipv4Net, default_subnet: Ipv4Net) -> Result<Self, IpamError> {
        let universe = universe.trunc();
        let default_subnet = default_subnet.trunc();
        if !overlaps(universe, default_subnet) {
            return Err(IpamError::DefaultSubnetOutside {
                subnet: default_subnet,
                universe,
            });
        }
        Ok(Self {
            universe,
            default_subnet,
            owners: BTreeMap::new(),
            used: BTreeMap::new(),
            dead: BTreeMap::new(),
            space: Space::Whole,
        })
    }

    /// Restricts allocation to owned blocks of prefix length `len` (cut to the range's own length
    /// when the range is smaller than a block); none is owned yet. Switching again keeps the
    /// blocks owned when the length is the same.
    pub fn use_blocks(&mut self, len: u8) {
        let len = len.max(self.universe.prefix_len()).min(32);
        if !matches!(self.space, Space::Blocks { len: l, .. } if l == len) {
            self.space = Space::Blocks {
                len,
                owned: BTreeSet::new(),
            };
        }
    }

    /// Which addresses may be given out.
    pub fn space(&self) -> &Space {
        &self.space
    }

    /// Records that this host owns `block` (claimed in the store). Returns false, changing
    /// nothing, when the allocator is not in block mode or `block` is not one of its blocks.
    pub fn add_block(&mut self, block: Ipv4Net) -> bool {
        let universe = self.universe;
        match &mut self.space {
            Space::Blocks { len, owned }
                if block.prefix_len() == *len
                    && block == block.trunc()
                    && universe.contains(&block) =>
            {
                owned.insert(block);
                true
            }
            _ => false,
        }
    }

    /// Whether this host may allocate in `block`: always when alone.
    pub fn owns_block(&self, block: Ipv4Net) -> bool {
        match &self.space {
            Space::Whole => true,
            Space::Blocks { owned, .. } => owned.contains(&block),
        }
    }

    /// Stops allocating in `block`: another peer owns it now (taken over with `rmpeer --force`
    /// while this host was cut off). Addresses already given out in it stay recorded. Returns
    /// whether it was owned.
    pub fn remove_block(&mut self, block: Ipv4Net) -> bool {
        match &mut self.space {
            Space::Blocks { owned, .. } => owned.remove(&block),
            Space::Whole => false,
        }
    }

    /// The owned blocks (none outside block mode).
    pub fn owned_blocks(&self) -> Vec<Ipv4Net> {
        match &self.space {
            Space::Blocks { owned, .. } => owned.iter().copied().collect(),
            Space::Whole => Vec::new(),
        }
    }

    /// The blocks holding recorded addresses that this host does not own: addresses given out
    /// before it joined a network of several hosts, or found on containers at start.
    pub fn unowned_blocks_in_use(&self) -> Vec<Ipv4Net> {
        let mut blocks: Vec<Ipv4Net> = self
            .used
            .keys()
            .filter_map(|addr| self.block_of(*addr))
            .filter(|block| !self.owns_block(*block))
            .collect();
        blocks.dedup();
        blocks
    }

    /// How many addresses are recorded inside `block`.
    pub fn used_in(&self, block: Ipv4Net) -> usize {
        self.used.range(block.network()..=block.broadcast()).count()
    }

    /// The block `addr` falls in, when in block mode and `addr` is inside the range.
    pub fn block_of(&self, addr: Ipv4Addr) -> Option<Ipv4Net> {
        match &self.space {
            Space::Blocks { len, .. } if self.universe.contains(&addr) => {
                Some(with_prefix(addr, *len).trunc())
            }
            _ => None,
        }
    }

    /// Every block of the range that overlaps `subnet`'s allocatable addresses, lowest first
    /// (none outside block mode): the candidates a host may claim for an allocation in it.
    pub fn blocks_for(&self, subnet: Ipv4Net) -> Vec<Ipv4Net> {
        let (Space::Blocks { len, .. }, Some((first, last))) =
            (&self.space, self.candidates(subnet.trunc()))
        else {
            return Vec::new();
        };
        let size = 1u64 << (32 - u32::from(*len));
        let mut blocks = Vec::new();
        let mut at = u64::from(u32::from(
            with_prefix(Ipv4Addr::from(first), *len).trunc().network(),
        ));
        while at <= u64::from(last) {
            let addr = u32::try_from(at).unwrap_or_else(|_| unreachable!("at ≤ last, a u32"));
            blocks.push(with_prefix(Ipv4Addr::from(addr), *len));
            at += size;
        }
        blocks
    }

    /// How many of `subnet`'s allocatable addresses in owned blocks are taken, and how many there
    /// are: what decides claiming the next block ahead of need.
    pub fn fill(&self, subnet: Ipv4Net) -> (u64, u64) {
        let subnet = subnet.trunc();
        self.ranges(subnet)
            .into_iter()
            .fold((0, 0), |(used, total), (first, last)| {
                let taken = self
                    .used
                    .range(Ipv4Addr::from(first)..=Ipv4Addr::from(last))
                    .count() as u64;
                (used + taken, total + u64::from(last - first) + 1)
            })
    }

    /// The `--ipalloc-range`.
    pub fn universe(&self) -> Ipv4Net {
        self.universe
    }

    /// The `--ipalloc-default-subnet`.
    pub fn default_subnet(&self) -> Ipv4Net {
        self.default_subnet
    }

    /// Every owner, ordered by id.
    pub fn owners(&self) -> impl Iterator<Item = (&str, &Owner)> {
        self.owners.iter().map(|(id, owner)| (id.as_str(), owner))
    }

    /// Who holds `addr`, if anyone.
    pub fn owner_of(&self, addr: Ipv4Addr) -> Option<&str> {
        self.used.get(&addr).map(String::as_str)
    }

    /// Whether the two hold the same addresses for the same ids: what is persisted, leaving out
    /// dead marks (which are not).
    pub fn same_allocations(&self, other: &Self) -> bool {
        self.universe == other.universe
            && self.default_subnet == other.default_subnet
            && self.owners == other.owners
            && self.space == other.space
    }

    /// When `id` was marked dead, if it is.
    pub fn dead_since(&self, id: &str) -> Option<Instant> {
        self.dead.get(id).copied()
    }

    /// Gives `id` an address in `subnet`: the one it already holds there, or else the lowest free
    /// host address (never the subnet's network or broadcast address). The answer carries the
    /// subnet's prefix length, as `POST /ip/{id}` reports it.
    ///
    /// # Errors
    /// [`IpamError::OutOfBounds`] when `subnet` lies wholly outside the range,
    /// [`IpamError::Exhausted`] when every host address of `subnet` inside the range is taken.
    pub fn allocate(
        &mut self,
        id: &str,
        subnet: Ipv4Net,
        is_container: bool,
    ) -> Result<Ipv4Net, IpamError> {
        let subnet = subnet.trunc();
        if let Some(held) = self.lookup(id, subnet).first() {
            let held = with_prefix(held.addr(), subnet.prefix_len());
            // Asking again is proof of life (the original's "resurrect").
            self.dead.remove(id);
            return Ok(held);
        }
        let cidr = self.lowest_free(subnet)?;
        self.record(id, cidr, is_container);
        Ok(cidr)
    }

    /// The lowest free host address of `subnet` inside the range, with the subnet's prefix
    /// length; nothing is recorded. For owners named after their address (Docker's IPAM driver
    /// hands out addresses before it knows whose they are), which then [`Allocator::claim`] it.
    ///
    /// # Errors
    /// [`IpamError::OutOfBounds`] when `subnet` lies wholly outside the range,
    /// [`IpamError::Exhausted`] when every host address of `subnet` inside the range is taken;
    /// in block mode [`IpamError::NeedBlock`] when the owned blocks in it are full.
    pub fn lowest_free(&self, subnet: Ipv4Net) -> Result<Ipv4Net, IpamError> {
        let subnet = subnet.trunc();
        let Some((first, last)) = self.candidates(subnet) else {
            return Err(IpamError::OutOfBounds {
                subnet,
                universe: self.universe,
            });
        };
        let Some(next) = self
            .ranges(subnet)
            .into_iter()
            .find_map(|(lo, hi)| self.lowest_free_in(lo, hi))
        else {
            return Err(match self.space {
                Space::Whole => IpamError::Exhausted {
                    subnet,
                    hosts: u64::from(last - first) + 1,
                },
                Space::Blocks { .. } => IpamError::NeedBlock(subnet),
            });
        };
        Ok(with_prefix(Ipv4Addr::from(next), subnet.prefix_len()))
    }

    /// Records that `id` holds exactly `cidr` (address plus mask). Addresses outside the range are
    /// recorded as given: the user is assumed to know what they are doing. An address held by an id
    /// marked dead is taken over: that container is gone for all we know, and the claimant is alive.
    ///
    /// # Errors
    /// [`IpamError::OwnedBy`] (inside the range) or [`IpamError::InUseBy`] (outside it) when another
    /// id holds the address; [`IpamError::InUse`] when it was claimed under [`NO_CONTAINER_ID`] and a
    /// real id now asks for it.
    /// In block mode, [`IpamError::BlockNotOwned`] for a new address in a block this host does
    /// not own.
    pub fn claim(&mut self, id: &str, cidr: Ipv4Net, is_container: bool) -> Result<(), IpamError> {
        self.claim_in(id, cidr, is_container, true)
    }

    fn claim_in(
        &mut self,
        id: &str,
        cidr: Ipv4Net,
        is_container: bool,
        check_space: bool,
    ) -> Result<(), IpamError> {
        let addr = cidr.addr();
        let addr_id = addr.to_string();
        let effective = if id == NO_CONTAINER_ID {
            addr_id.as_str()
        } else {
            id
        };
        match self.used.get(&addr) {
            None => {
                if let (true, Some(block)) = (check_space, self.block_of(addr))
                    && !self.owns_block(block)
                {
                    return Err(IpamError::BlockNotOwned(cidr, block));
                }
                self.record(effective, cidr, is_container);
                Ok(())
            }
            Some(existing) if existing == effective => {
                self.dead.remove(effective);
                Ok(())
            }
            Some(existing) if self.dead.contains_key(existing) => {
                let previous = existing.clone();
                self.free(&previous, addr)
                    .unwrap_or_else(|_| unreachable!("`used` and `owners` agree"));
                self.record(effective, cidr, is_container);
                Ok(())
            }
            Some(existing) if *existing == addr_id => Err(IpamError::InUse(cidr)),
            // The caller cannot tell us which container it is, and we cannot prove it is another one.
            Some(_) if id == NO_CONTAINER_ID => Ok(()),
            Some(existing) if self.universe.contains(&addr) => {
                Err(IpamError::OwnedBy(cidr, existing.clone()))
            }
            Some(existing) => Err(IpamError::InUseBy(cidr, existing.clone())),
        }
    }

    /// The addresses `id` holds whose address lies in `subnet`'s host range, in the order given.
    pub fn lookup(&self, id: &str, subnet: Ipv4Net) -> Vec<Ipv4Net> {
        let subnet = subnet.trunc();
        self.owners.get(id).map_or_else(Vec::new, |owner| {
            owner
                .cidrs
                .iter()
                .copied()
                .filter(|cidr| in_host_range(subnet, cidr.addr()))
                .collect()
        })
    }

    /// Frees every address of `id` and returns them.
    ///
    /// # Errors
    /// [`IpamError::NoAddresses`] when `id` holds nothing.
    pub fn delete(&mut self, id: &str) -> Result<Vec<Ipv4Net>, IpamError> {
        let owner = self
            .owners
            .remove(id)
            .ok_or_else(|| IpamError::NoAddresses(id.to_owned()))?;
        for cidr in &owner.cidrs {
            self.used.remove(&cidr.addr());
        }
        self.dead.remove(id);
        Ok(owner.cidrs)
    }

    /// Frees one address of `id`.
    ///
    /// # Errors
    /// [`IpamError::NotFound`] when `id` does not hold `addr`.
    pub fn free(&mut self, id: &str, addr: Ipv4Addr) -> Result<(), IpamError> {
        let not_found = || IpamError::NotFound(addr, id.to_owned());
        let owner = self.owners.get_mut(id).ok_or_else(not_found)?;
        let at = owner
            .cidrs
            .iter()
            .position(|cidr| cidr.addr() == addr)
            .ok_or_else(not_found)?;
        owner.cidrs.remove(at);
        if owner.cidrs.is_empty() {
            self.owners.remove(id);
            self.dead.remove(id);
        }
        self.used.remove(&addr);
        Ok(())
    }

    /// Puts a previously saved entry back. Unlike [`Allocator::claim`] nothing is remapped or
    /// forgiven: a saved state in which two ids share an address is corrupt.
    ///
    /// # Errors
    /// [`IpamError::InUseBy`] naming the id that already holds the address.
    pub fn restore(
        &mut self,
        id: &str,
        cidr: Ipv4Net,
        is_container: bool,
    ) -> Result<(), IpamError> {
        match self.used.get(&cidr.addr()) {
            Some(existing) => Err(IpamError::InUseBy(cidr, existing.clone())),
            None => {
                self.record(id, cidr, is_container);
                Ok(())
            }
        }
    }

    /// The container with `id` died at `now`: its addresses are kept for now, and freed by
    /// [`Allocator::expire_dead`] unless it starts again. Only container entries are marked;
    /// marking an id twice keeps the first time. Returns whether `id` is now marked.
    pub fn mark_dead(&mut self, id: &str, now: Instant) -> bool {
        if !self.owners.get(id).is_some_and(|o| o.is_container) {
            return false;
        }
        self.dead.entry(id.to_owned()).or_insert(now);
        true
    }

    /// The container with `id` started (again): it keeps its addresses. Returns whether it had
    /// been marked dead.
    pub fn revive(&mut self, id: &str) -> bool {
        self.dead.remove(id).is_some()
    }

    /// The container with `id` was removed: its container entry is freed at once. Entries made
    /// without `check-alive` are left alone (they were never the container's to lose).
    pub fn release_container(&mut self, id: &str) -> Option<Released> {
        if !self.owners.get(id).is_some_and(|o| o.is_container) {
            return None;
        }
        let cidrs = self
            .delete(id)
            .unwrap_or_else(|_| unreachable!("the owner exists"));
        Some(Released {
            id: id.to_owned(),
            cidrs,
        })
    }

    /// Frees every id marked dead at least `timeout` before `now`.
    pub fn expire_dead(&mut self, now: Instant, timeout: Duration) -> Vec<Released> {
        let expired: Vec<String> = self
            .dead
            .iter()
            .filter(|&(_, &since)| now.saturating_duration_since(since) >= timeout)
            .map(|(id, _)| id.clone())
            .collect();
        expired
            .into_iter()
            .filter_map(|id| {
                let cidrs = self.delete(&id).ok()?;
                Some(Released { id, cidrs })
            })
            .collect()
    }

    /// Brings the dead marks in line with the containers that run now, after events may have been
    /// missed (a reconnect to Docker): a container entry whose container is not in `running` is
    /// marked dead at `now` (and so freed after the grace period); one that runs loses its mark.
    pub fn sync_running(&mut self, running: &HashSet<String>, now: Instant) -> SyncReport {
        let mut report = SyncReport::default();
        let containers: Vec<String> = self
            .owners
            .iter()
            .filter(|(_, owner)| owner.is_container)
            .map(|(id, _)| id.clone())
            .collect();
        for id in containers {
            if running.contains(&id) {
                if self.revive(&id) {
                    report.revived.push(id);
                }
            } else if !self.dead.contains_key(&id) {
                self.dead.insert(id.clone(), now);
                report.marked_dead.push(id);
            }
        }
        report
    }

    /// The start-up reclaim: frees every container entry whose container is not in `running`
    /// (the original's `PruneOwned`), then records each address `found` on a running container's
    /// interface under that container's id. Pruning first means an address a vanished container
    /// still held in the saved state goes to the container that really has it now.
    pub fn reclaim(
        &mut self,
        running: &HashSet<String>,
        found: &[(String, Vec<Ipv4Net>)],
    ) -> ReclaimReport {
        let mut report = ReclaimReport::default();
        let gone: Vec<String> = self
            .owners
            .iter()
            .filter(|(id, owner)| owner.is_container && !running.contains(*id))
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            if let Some(released) = self.release_container(&id) {
                report.pruned.push(released);
            }
        }
        for (id, cidrs) in found {
            for &cidr in cidrs {
                // The container has the address, whoever's block it is in: record it, so that at
                // least this host never gives it out again.
                match self.claim_in(id, cidr, true, false) {
                    Ok(()) => report.claimed += 1,
                    Err(err) => report.conflicts.push((id.clone(), cidr, err)),
                }
            }
        }
        report
    }

    fn record(&mut self, id: &str, cidr: Ipv4Net, is_container: bool) {
        self.dead.remove(id);
        self.used.insert(cidr.addr(), id.to_owned());
        let owner = self.owners.entry(id.to_owned()).or_insert_with(|| Owner {
            is_container,
            cidrs: Vec::new(),
        });
        // The latest request says what the id is, as in the original's addOwned.
        owner.is_container = is_container;
        owner.cidrs.push(cidr);
    }

    /// The stretches of `subnet` this host may allocate from, lowest first: its allocatable
    /// addresses, cut to the owned blocks in block mode.
    fn ranges(&self, subnet: Ipv4Net) -> Vec<(u32, u32)> {
        let Some((first, last)) = self.candidates(subnet) else {
            return Vec::new();
        };
        match &self.space {
            Space::Whole => vec![(first, last)],
            Space::Blocks { owned, .. } => owned
                .iter()
                .filter_map(|block| {
                    let lo = first.max(u32::from(block.network()));
                    let hi = last.min(u32::from(block.broadcast()));
                    (lo <= hi).then_some((lo, hi))
                })
                .collect(),
        }
    }

    /// The lowest address in `first..=last` nobody holds.
    fn lowest_free_in(&self, first: u32, last: u32) -> Option<u32> {
        let mut next = first;
        for &taken in self
            .used
            .range(Ipv4Addr::from(first)..=Ipv4Addr::from(last))
            .map(|(a, _)| a)
        {
            if u32::from(taken) != next {
                break;
            }
            // `taken` ≤ `last` ≤ u32::MAX - 1 (a broadcast address always follows), so no overflow.
            next += 1;
        }
        (next <= last).then_some(next)
    }

    /// First and last allocatable address of `subnet` as numbers: its host range cut to the range.
    fn candidates(&self, subnet: Ipv4Net) -> Option<(u32, u32)> {
        let (lo, hi) = host_range(subnet)?;
        let first = lo.max(u32::from(self.universe.network()));
        let last = hi.min(u32::from(self.universe.broadcast()));
        (first <= last).then_some((first, last))
    }
}

fn with_prefix(addr: Ipv4Addr, prefix: u8) -> Ipv4Net {
    Ipv4Net::new(addr, prefix).unwrap_or_else(|_| unreachable!("prefix comes from a valid Ipv4Net"))
}

/// Network+1 ..= broadcast-1 as numbers; `None` for /31 and /32, which have no such range.
fn host_range(subnet: Ipv4Net) -> Option<(u32, u32)> {
    let lo = u32::from(subnet.network()).checked_add(1)?;
    let hi = u32::from(subnet.broadcast()).checked_sub(1)?;
    (lo <= hi).then_some((lo, hi))
}

fn in_host_range(subnet: Ipv4Net, addr: Ipv4Addr) -> bool {
    host_range(subnet).is_some_and(|(lo, hi)| (lo..=hi).contains(&u32::from(addr)))
}

fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> Ipv4Net {
        text.parse().unwrap()
    }

    fn alloc(range: &str) -> Allocator {
        Allocator::new(net(range), net(range)).unwrap()
    }

    #[test]
    fn subnet_parsing_follows_the_original_rules() {
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("10.2.0.0/24", Ok("10.2.0.0/24")),
            ("10.2.0.0/30", Ok("10.2.0.0/30")),
            (
                "10.2.0.1/24",
                Err("invalid subnet - bits after network prefix are not all zero: 10.2.0.1/24"),
            ),
            (
                "10.2.0.0/31",
                Err("invalid subnet - smaller than minimum size 4: 10.2.0.0/31"),
            ),
            (
                "10.2.0.0/32",
                Err("invalid subnet - smaller than minimum size 4: 10.2.0.0/32"),
            ),
            ("10.2.0.0/33", Err("invalid CIDR address: 10.2.0.0/33")),
            ("fd00::/64", Err("invalid CIDR address: fd00::/64")),
            ("nonsense", Err("invalid CIDR address: nonsense")),
        ];
        for (text, want) in cases {
            let got = parse_subnet(text)
                .map(|n| n.to_string())
                .map_err(|e| e.to_string());
            let want = want.map(str::to_owned).map_err(str::to_owned);
            assert_eq!(got, want, "parse_subnet({text})");
        }
    }

    #[test]
    fn default_subnet_must_overlap_the_range() {
        assert!(Allocator::new(net("10.32.0.0/12"), net("10.32.1.0/24")).is_ok());
        assert!(Allocator::new(net("10.32.0.0/24"), net("10.32.0.0/12")).is_ok());
        assert_eq!(
            Allocator::new(net("10.32.0.0/12"), net("10.2.0.0/16"))
                .unwrap_err()
                .to_string(),
            "default subnet 10.2.0.0/16 does not overlap with the allocation range 10.32.0.0/12"
        );
    }

    #[test]
    fn allocation_is_lowest_free_first_and_skips_network_and_broadcast() {
        let mut a = alloc("10.32.0.0/12");
        let subnet = net("10.32.0.0/12");
        let steps: &[(&str, &str)] = &[
            ("c1", "10.32.0.1/12"),
            ("c2", "10.32.0.2/12"),
            ("c3", "10.32.0.3/12"),
        ];
        for (id, want) in steps {
            assert_eq!(a.allocate(id, subnet, true).unwrap(), net(want), "{id}");
        }
        a.delete("c2").unwrap();
        assert_eq!(a.allocate("c4", subnet, true).unwrap(), net("10.32.0.2/12"));
        assert_eq!(a.allocate("c5", subnet, true).unwrap(), net("10.32.0.4/12"));

        let small = net("10.40.0.0/24");
        assert_eq!(a.allocate("c1", small, true).unwrap(), net("10.40.0.1/24"));
    }

    #[test]
    fn allocation_is_idempotent_per_id_and_subnet() {
        let mut a = alloc("10.32.0.0/12");
        let subnet = net("10.32.0.0/12");
        let first = a.allocate("c1", subnet, true).unwrap();
        assert_eq!(a.allocate("c1", subnet, true).unwrap(), first);
        assert_eq!(a.lookup("c1", subnet), vec![first]);
        // Another subnet is another address, and asking for the first subnet again still finds it.
        let other = a.allocate("c1", net("10.44.0.0/16"), true).unwrap();
        assert_eq!(other, net("10.44.0.1/16"));
        // The held address is reported with the prefix of the subnet asked for.
        assert_eq!(
            a.allocate("c1", net("10.44.0.0/24"), true).unwrap(),
            net("10.44.0.1/24")
        );
        assert_eq!(a.owners().count(), 1);
        assert_eq!(a.owners().next().unwrap().1.cidrs, vec![first, other]);
    }

    #[test]
    fn allocation_skips_claimed_addresses_and_respects_the_range() {
        let mut a = Allocator::new(net("10.32.0.0/28"), net("10.32.0.0/28")).unwrap();
        a.claim("x", net("10.32.0.1/28"), false).unwrap();
        a.claim("x", net("10.32.0.2/28"), false).unwrap();
        assert_eq!(
            a.allocate("c1", net("10.32.0.0/28"), true).unwrap(),
            net("10.32.0.3/28")
        );
        // A subnet larger than the range allocates only inside the range.
        assert_eq!(
            a.allocate("c2", net("10.32.0.0/24"), true).unwrap(),
            net("10.32.0.4/24")
        );
        assert_eq!(
            a.allocate("c3", net("10.2.0.0/24"), true)
                .unwrap_err()
                .to_string(),
            "range 10.2.0.0/24 out of bounds: 10.32.0.0/28"
        );
    }

    #[test]
    fn exhaustion_is_an_error_and_freeing_makes_room() {
        for (subnet, hosts) in [("10.32.0.0/30", 2_u32), ("10.32.0.16/28", 14)] {
            let subnet = net(subnet);
            let mut a = alloc("10.32.0.0/12");
            for i in 0..hosts {
                a.allocate(&format!("c{i}"), subnet, true).unwrap();
            }
            let err = a.allocate("late", subnet, true).unwrap_err();
            assert_eq!(
                err,
                IpamError::Exhausted {
                    subnet,
                    hosts: u64::from(hosts)
                }
            );
            assert_eq!(
                err.to_string(),
                format!("no free address in {subnet}: all {hosts} host addresses are allocated")
            );
            a.free("c1", a.lookup("c1", subnet)[0].addr()).unwrap();
            let got = a.allocate("late", subnet, true).unwrap();
            assert_eq!(got.addr(), Ipv4Addr::from(u32::from(subnet.network()) + 2));
        }
    }

    #[test]
    fn claims_table() {
        struct Case {
            what: &'static str,
            id: &'static str,
            cidr: &'static str,
            want: Result<(), &'static str>,
            owner_after: Option<&'static str>,
        }
        let cases = [
            Case {
                what: "free address inside the range",
                id: "c9",
                cidr: "10.32.0.9/12",
                want: Ok(()),
                owner_after: Some("c9"),
            },
            Case {
                what: "same id again",
                id: "c1",
                cidr: "10.32.0.1/12",
                want: Ok(()),
                owner_after: Some("c1"),
            },
            Case {
                what: "taken inside the range",
                id: "c2",
                cidr: "10.32.0.1/12",
                want: Err("address 10.32.0.1/12 is already owned by c1"),
                owner_after: Some("c1"),
            },
            Case {
                what: "outside the range is recorded",
                id: "c3",
                cidr: "10.2.1.1/24",
                want: Ok(()),
                owner_after: Some("c3"),
            },
            Case {
                what: "taken outside the range",
                id: "c4",
                cidr: "192.168.0.5/24",
                want: Err("address 192.168.0.5/24 already in use by ext"),
                owner_after: Some("ext"),
            },
            Case {
                what: "no container id is stored under the address",
                id: NO_CONTAINER_ID,
                cidr: "10.32.0.7/12",
                want: Ok(()),
                owner_after: Some("10.32.0.7"),
            },
            Case {
                what: "a real id cannot take an address claimed without an id",
                id: "c5",
                cidr: "10.32.0.8/12",
                want: Err("address 10.32.0.8/12 already in use"),
                owner_after: Some("10.32.0.8"),
            },
            Case {
                what: "no container id may re-claim anyone's address",
                id: NO_CONTAINER_ID,
                cidr: "10.32.0.1/12",
                want: Ok(()),
                owner_after: Some("c1"),
            },
        ];
        for case in cases {
            let mut a = alloc("10.32.0.0/12");
            a.allocate("c1", net("10.32.0.0/12"), true).unwrap();
            a.claim("ext", net("192.168.0.5/24"), false).unwrap();
            a.claim(NO_CONTAINER_ID, net("10.32.0.8/12"), false)
                .unwrap();
            let cidr = net(case.cidr);
            let got = a.claim(case.id, cidr, true).map_err(|e| e.to_string());
            assert_eq!(
                got,
                case.want.map_err(str::to_owned),
                "{}: result",
                case.what
            );
            assert_eq!(
                a.owner_of(cidr.addr()),
                case.owner_after,
                "{}: owner",
                case.what
            );
        }
    }

    #[test]
    fn claimed_addresses_keep_their_mask_and_show_up_in_lookup() {
        let mut a = alloc("10.32.0.0/12");
        a.claim("c1", net("10.32.0.7/24"), true).unwrap();
        a.claim("c1", net("10.2.1.1/24"), true).unwrap();
        assert_eq!(
            a.lookup("c1", net("10.32.0.0/12")),
            vec![net("10.32.0.7/24")]
        );
        assert_eq!(a.lookup("c1", net("10.2.1.0/24")), vec![net("10.2.1.1/24")]);
        assert_eq!(a.lookup("nobody", net("10.32.0.0/12")), vec![]);
        // Allocation in the subnet of a claimed address returns that address (idempotence).
        assert_eq!(
            a.allocate("c1", net("10.32.0.0/12"), true).unwrap(),
            net("10.32.0.7/12")
        );
    }

    #[test]
    fn free_and_delete() {
        let mut a = alloc("10.32.0.0/12");
        let subnet = net("10.32.0.0/12");
        let one = a.allocate("c1", subnet, true).unwrap();
        let two = a.allocate("c1", net("10.40.0.0/16"), true).unwrap();
        assert_eq!(
            a.free("c2", one.addr()).unwrap_err().to_string(),
            "Free: address 10.32.0.1 not found for c2"
        );
        a.free("c1", one.addr()).unwrap();
        assert_eq!(a.owner_of(one.addr()), None);
        assert_eq!(
            a.free("c1", one.addr()).unwrap_err().to_string(),
            "Free: address 10.32.0.1 not found for c1"
        );
        assert_eq!(a.delete("c1").unwrap(), vec![two]);
        assert_eq!(a.owners().count(), 0);
        assert_eq!(
            a.delete("c1").unwrap_err().to_string(),
            "Delete: no addresses for c1"
        );
        // Freeing the last address removes the id altogether.
        a.allocate("c3", subnet, true).unwrap();
        a.free("c3", one.addr()).unwrap();
        assert_eq!(a.owners().count(), 0);
    }

    #[test]
    fn restore_refuses_shared_addresses() {
        let mut a = alloc("10.32.0.0/12");
        a.restore("c1", net("10.32.0.1/12"), true).unwrap();
        assert_eq!(
            a.restore("c2", net("10.32.0.1/12"), true),
            Err(IpamError::InUseBy(net("10.32.0.1/12"), "c1".to_owned()))
        );
        assert_eq!(
            a.allocate("c3", net("10.32.0.0/12"), true).unwrap(),
            net("10.32.0.2/12")
        );
    }

    /// A clock for the lifecycle rules: `at(s)` is `s` seconds after an arbitrary origin.
    struct Clock(Instant);

    impl Clock {
        fn new() -> Self {
            Self(Instant::now())
        }
        fn at(&self, secs: u64) -> Instant {
            self.0 + Duration::from_secs(secs)
        }
    }

    const GRACE: Duration = Duration::from_secs(30);

    /// One step of a container's life as the events watcher and the API drive it.
    #[derive(Debug, Clone, Copy)]
    enum Step {
        /// `POST /ip/{id}` with or without check-alive, at a second.
        Allocate(&'static str, bool),
        /// `PUT /ip/{id}/{cidr}` with check-alive.
        Claim(&'static str, &'static str),
        Die(&'static str, u64),
        Start(&'static str),
        Destroy(&'static str),
        /// The periodic sweep at a second.
        Sweep(u64),
    }

    #[test]
    fn dead_marks_table() {
        use Step::*;
        struct Case {
            what: &'static str,
            steps: &'static [Step],
            /// Every owner afterwards with its addresses.
            owners: &'static [(&'static str, &'static [&'static str])],
            dead: &'static [&'static str],
        }
        let cases = [
            Case {
                what: "die then start keeps the address",
                steps: &[Allocate("c1", true), Die("c1", 0), Start("c1"), Sweep(100)],
                owners: &[("c1", &["10.32.0.1/12"])],
                dead: &[],
            },
            Case {
                what: "die keeps the address within the grace period",
                steps: &[Allocate("c1", true), Die("c1", 0), Sweep(29)],
                owners: &[("c1", &["10.32.0.1/12"])],
                dead: &["c1"],
            },
            Case {
                what: "die frees after the grace period",
                steps: &[Allocate("c1", true), Die("c1", 0), Sweep(30)],
                owners: &[],
                dead: &[],
            },
            Case {
                what: "a second die keeps the first time",
                steps: &[Allocate("c1", true), Die("c1", 0), Die("c1", 20), Sweep(31)],
                owners: &[],
                dead: &[],
            },
            Case {
                what: "destroy frees at once",
                steps: &[Allocate("c1", true), Allocate("c2", true), Destroy("c1")],
                owners: &[("c2", &["10.32.0.2/12"])],
                dead: &[],
            },
            Case {
                what: "destroy after die frees at once and leaves no mark",
                steps: &[
                    Allocate("c1", true),
                    Die("c1", 0),
                    Destroy("c1"),
                    Sweep(100),
                ],
                owners: &[],
                dead: &[],
            },
            Case {
                what: "entries made without check-alive are never released",
                steps: &[
                    Allocate("weave:expose", false),
                    Die("weave:expose", 0),
                    Sweep(100),
                    Destroy("weave:expose"),
                ],
                owners: &[("weave:expose", &["10.32.0.1/12"])],
                dead: &[],
            },
            Case {
                what: "events for unknown ids change nothing",
                steps: &[
                    Allocate("c1", true),
                    Die("c9", 0),
                    Start("c9"),
                    Destroy("c9"),
                ],
                owners: &[("c1", &["10.32.0.1/12"])],
                dead: &[],
            },
            Case {
                what: "allocating again resurrects a dead id with the same address",
                steps: &[
                    Allocate("c1", true),
                    Die("c1", 0),
                    Allocate("c1", true),
                    Sweep(100),
                ],
                owners: &[("c1", &["10.32.0.1/12"])],
                dead: &[],
            },
            Case {
                what: "claiming its own address again resurrects a dead id",
                steps: &[
                    Claim("c1", "10.2.1.1/24"),
                    Die("c1", 0),
                    Claim("c1", "10.2.1.1/24"),
                    Sweep(100),
                ],
                owners: &[("c1", &["10.2.1.1/24"])],
                dead: &[],
            },
            Case {
                what: "a claim takes an address over from a dead id",
                steps: &[
                    Claim("c1", "10.2.1.1/24"),
                    Claim("c1", "10.2.1.2/24"),
                    Die("c1", 0),
                    Claim("c2", "10.2.1.1/24"),
                ],
                owners: &[("c1", &["10.2.1.2/24"]), ("c2", &["10.2.1.1/24"])],
                dead: &["c1"],
            },
            Case {
                what: "taking over the last address of a dead id drops the id and its mark",
                steps: &[
                    Claim("c1", "10.32.0.5/12"),
                    Die("c1", 0),
                    Claim("c2", "10.32.0.5/12"),
                ],
                owners: &[("c2", &["10.32.0.5/12"])],
                dead: &[],
            },
            Case {
                what: "a dead id's address is not handed out by allocation",
                steps: &[Allocate("c1", true), Die("c1", 0), Allocate("c2", true)],
                owners: &[("c1", &["10.32.0.1/12"]), ("c2", &["10.32.0.2/12"])],
                dead: &["c1"],
            },
        ];
        for case in cases {
            let clock = Clock::new();
            let mut a = alloc("10.32.0.0/12");
            let range = net("10.32.0.0/12");
            for step in case.steps {
                match *step {
                    Allocate(id, check_alive) => {
                        a.allocate(id, range, check_alive).unwrap();
                    }
                    Claim(id, cidr) => a.claim(id, net(cidr), true).unwrap(),
                    Die(id, at) => {
                        a.mark_dead(id, clock.at(at));
                    }
                    Start(id) => {
                        a.revive(id);
                    }
                    Destroy(id) => {
                        a.release_container(id);
                    }
                    Sweep(at) => {
                        a.expire_dead(clock.at(at), GRACE);
                    }
                }
            }
            let owners: Vec<(String, Vec<String>)> = a
                .owners()
                .map(|(id, o)| {
                    (
                        id.to_owned(),
                        o.cidrs.iter().map(ToString::to_string).collect(),
                    )
                })
                .collect();
            let want: Vec<(String, Vec<String>)> = case
                .owners
                .iter()
                .map(|(id, cidrs)| {
                    (
                        (*id).to_owned(),
                        cidrs.iter().map(|c| (*c).to_owned()).collect(),
                    )
                })
                .collect();
            assert_eq!(owners, want, "{}: owners", case.what);
            let dead: Vec<&str> = a.dead.keys().map(String::as_str).collect();
            assert_eq!(dead, case.dead, "{}: dead marks", case.what);
        }
    }

    #[test]
    fn expiry_reports_what_it_freed_and_only_what_is_due() {
        let clock = Clock::new();
        let mut a = alloc("10.32.0.0/12");
        let range = net("10.32.0.0/12");
        a.allocate("early", range, true).unwrap();
        a.allocate("late", range, true).unwrap();
        a.claim("early", net("10.2.1.1/24"), true).unwrap();
        assert!(a.mark_dead("early", clock.at(0)));
        assert!(a.mark_dead("late", clock.at(10)));
        assert!(!a.mark_dead("nobody", clock.at(10)));
        assert_eq!(a.dead_since("late"), Some(clock.at(10)));
        assert_eq!(a.expire_dead(clock.at(5), GRACE), vec![]);
        assert_eq!(
            a.expire_dead(clock.at(35), GRACE),
            vec![Released {
                id: "early".to_owned(),
                cidrs: vec![net("10.32.0.1/12"), net("10.2.1.1/24")],
            }]
        );
        assert_eq!(a.owner_of(net("10.2.1.1/24").addr()), None);
        assert_eq!(a.expire_dead(clock.at(40), GRACE).len(), 1);
        assert_eq!(a.owners().count(), 0);
    }

    #[test]
    fn dead_marks_are_not_part_of_what_is_saved() {
        let clock = Clock::new();
        let mut a = alloc("10.32.0.0/12");
        a.allocate("c1", net("10.32.0.0/12"), true).unwrap();
        let before = a.clone();
        a.mark_dead("c1", clock.at(0));
        assert!(a.same_allocations(&before));
        assert_ne!(a, before);
        a.release_container("c1").unwrap();
        assert!(!a.same_allocations(&before));
    }

    #[test]
    fn sync_running_marks_the_missing_and_revives_the_running() {
        let clock = Clock::new();
        let mut a = alloc("10.32.0.0/12");
        let range = net("10.32.0.0/12");
        for id in ["up", "down", "back"] {
            a.allocate(id, range, true).unwrap();
        }
        a.allocate("weave:expose", range, false).unwrap();
        a.mark_dead("back", clock.at(0));
        let running: HashSet<String> = ["up", "back"].map(str::to_owned).into();
        let report = a.sync_running(&running, clock.at(3));
        assert_eq!(
            report,
            SyncReport {
                marked_dead: vec!["down".to_owned()],
                revived: vec!["back".to_owned()],
            }
        );
        assert_eq!(a.dead_since("down"), Some(clock.at(3)));
        // A second sync changes nothing and keeps the first time.
        assert_eq!(a.sync_running(&running, clock.at(9)), SyncReport::default());
        assert_eq!(a.dead_since("down"), Some(clock.at(3)));
        let freed = a.expire_dead(clock.at(33), GRACE);
        assert_eq!(freed.len(), 1);
        assert_eq!(freed[0].id, "down");
    }

    #[test]
    fn reclaim_prunes_gone_containers_then_records_what_interfaces_hold() {
        let mut a = alloc("10.32.0.0/12");
        let range = net("10.32.0.0/12");
        a.allocate("running", range, true).unwrap(); // .1
        a.allocate("gone", range, true).unwrap(); // .2
        a.allocate("weave:expose", range, false).unwrap(); // .3
        a.allocate("other", range, true).unwrap(); // .4
        let running: HashSet<String> = ["running", "fresh", "other"].map(str::to_owned).into();
        let found = vec![
            // Already recorded: confirmed.
            ("running".to_owned(), vec![net("10.32.0.1/12")]),
            // Held by a container that is gone in the saved state: it goes to the one that has it.
            (
                "fresh".to_owned(),
                vec![net("10.32.0.2/12"), net("10.2.1.1/24")],
            ),
            // Held by another live container: a conflict, reported and left alone.
            ("running".to_owned(), vec![net("10.32.0.4/12")]),
        ];
        let report = a.reclaim(&running, &found);
        assert_eq!(
            report.pruned,
            vec![Released {
                id: "gone".to_owned(),
                cidrs: vec![net("10.32.0.2/12")],
            }]
        );
        assert_eq!(report.claimed, 3);
        assert_eq!(report.conflicts.len(), 1);
        assert_eq!(
            report.conflicts[0].2.to_string(),
            "address 10.32.0.4/12 is already owned by other"
        );
        assert_eq!(a.lookup("fresh", range), vec![net("10.32.0.2/12")]);
        assert_eq!(a.owner_of(net("10.2.1.1/24").addr()), Some("fresh"));
        assert_eq!(a.owner_of(net("10.32.0.3/12").addr()), Some("weave:expose"));
        assert!(a.owners().all(|(_, o)| o.cidrs.len() <= 2));
    }

    #[test]
    fn in_block_mode_allocation_stays_in_owned_blocks_and_asks_for_more() {
        let mut a = alloc("10.32.0.0/12");
        a.use_blocks(26);
        let range = net("10.32.0.0/12");
        assert_eq!(
            a.allocate("c1", range, true),
            Err(IpamError::NeedBlock(range))
        );
        assert!(a.add_block(net("10.32.0.64/26")));
        assert!(!a.add_block(net("10.32.0.65/26")), "not aligned");
        assert!(!a.add_block(net("10.32.0.0/24")), "not a block");
        assert!(!a.add_block(net("10.1.0.0/26")), "outside the range");
        assert_eq!(a.allocate("c1", range, true), Ok(net("10.32.0.64/12")));
        assert_eq!(a.allocate("c2", range, true), Ok(net("10.32.0.65/12")));
        // A subnet that has no owned block in it needs one of its own.
        let sub = net("10.32.2.0/24");
        assert_eq!(a.allocate("c3", sub, true), Err(IpamError::NeedBlock(sub)));
        assert!(a.add_block(net("10.32.2.0/26")));
        // Never the subnet's network address, even when it opens the block.
        assert_eq!(a.allocate("c3", sub, true), Ok(net("10.32.2.1/24")));
        // Full blocks ask for another; the blocks owned so far are reported.
        for i in 0..64 {
            let _ = a.allocate(&format!("f{i}"), net("10.32.0.64/26"), true);
        }
        assert_eq!(a.fill(net("10.32.0.64/26")), (62, 62));
        assert_eq!(
            a.allocate("c4", net("10.32.0.64/26"), true),
            Err(IpamError::NeedBlock(net("10.32.0.64/26")))
        );
    }

    #[test]
    fn blocks_for_a_subnet_are_the_aligned_blocks_it_touches() {
        let mut a = alloc("10.32.0.0/12");
        assert!(
            a.blocks_for(net("10.32.0.0/24")).is_empty(),
            "not in block mode"
        );
        a.use_blocks(26);
        let show = |v: Vec<Ipv4Net>| v.iter().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(
            show(a.blocks_for(net("10.32.1.0/24"))),
            [
                "10.32.1.0/26",
                "10.32.1.64/26",
                "10.32.1.128/26",
                "10.32.1.192/26"
            ]
        );
        assert_eq!(show(a.blocks_for(net("10.32.1.16/28"))), ["10.32.1.0/26"]);
        assert_eq!(a.blocks_for(net("10.32.0.0/12")).len(), 1 << 14);
        assert!(
            a.blocks_for(net("10.1.0.0/24")).is_empty(),
            "outside the range"
        );
        // A range smaller than a block is one block.
        let mut small = alloc("10.9.0.0/28");
        small.use_blocks(26);
        assert_eq!(show(small.blocks_for(net("10.9.0.0/28"))), ["10.9.0.0/28"]);
    }

    #[test]
    fn in_block_mode_claims_need_an_owned_block_but_reclaim_records_what_runs() {
        let mut a = alloc("10.32.0.0/12");
        a.use_blocks(26);
        a.add_block(net("10.32.0.0/26"));
        assert_eq!(a.claim("c1", net("10.32.0.9/12"), true), Ok(()));
        assert_eq!(
            a.claim("c2", net("10.32.0.70/12"), true),
            Err(IpamError::BlockNotOwned(
                net("10.32.0.70/12"),
                net("10.32.0.64/26")
            ))
        );
        assert_eq!(
            a.claim("x", net("10.2.0.1/24"), false),
            Ok(()),
            "outside the range"
        );
        let running: HashSet<String> = ["c3".to_owned()].into();
        let report = a.reclaim(&running, &[("c3".to_owned(), vec![net("10.32.0.70/12")])]);
        assert_eq!((report.claimed, report.conflicts.len()), (1, 0));
        assert_eq!(a.owner_of("10.32.0.70".parse().unwrap()), Some("c3"));
    }

    #[test]
    fn addresses_given_out_alone_name_the_blocks_to_claim_on_joining() {
        let mut a = alloc("10.32.0.0/12");
        a.allocate("c1", net("10.32.0.0/12"), true).unwrap();
        a.allocate("c2", net("10.32.0.0/12"), true).unwrap();
        a.claim("c3", net("10.32.1.70/12"), true).unwrap();
        a.claim("x", net("10.1.0.1/24"), false).unwrap();
        assert!(
            a.unowned_blocks_in_use().is_empty(),
            "alone, every block is owned"
        );
        a.use_blocks(26);
        assert_eq!(
            a.unowned_blocks_in_use(),
            [net("10.32.0.0/26"), net("10.32.1.64/26")]
        );
        a.add_block(net("10.32.0.0/26"));
        assert_eq!(a.unowned_blocks_in_use(), [net("10.32.1.64/26")]);
    }
}
