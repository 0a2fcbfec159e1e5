//! The pure half of links: what berth's nftables table in a pod's network
//! namespace should hold for its links, their ready backends and its
//! outbound policy ([`desired`]), and the changes that bring the table
//! there from what it holds ([`changes`]). No I/O here.
//!
//! The table (`ip berth`) has a few fixed rules and sets; links live in
//! map elements. For each number of backends k that some link has, one
//! DNAT rule looks `ip daddr . tcp dport . numgen random mod k` up in the
//! map `backends_k`, whose elements map (address, port, slot) to one
//! backend each: a link with k backends has k elements, so each backend
//! gets an equal share of new connections, as iptables' `statistic
//! --mode random` chain did. Adding, moving or removing a link only adds
//! and deletes elements, which costs the same however many links the
//! namespace holds (a new rule would make nf_tables re-validate the whole
//! table, 14-40 ms at 20,000 rules).
//!
//! Every rule carries a tag in its user data (`nft list` shows it as the
//! comment `berth:<hash of the rule>`), so the rules read back are
//! compared without decoding their expressions: a chain someone flushed,
//! edited or extended has the wrong tags and is written again.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{BuildHasher, Hasher};
use std::net::Ipv4Addr;
use std::sync::OnceLock;

use berth_model::{EgressPolicy, Link};
use foldhash::quality::RandomState;
use sha2::Digest as _;

use super::nft::{
    datatype, ifname, reg, BaseChain, ChainType, Change, CmpOp, CtKey, Expr, Hook, MetaKey,
    PayloadBase, SetSpec, Verdict,
};

/// berth's table in each pod namespace (family `ip`).
pub const TABLE: &str = "berth";
/// NAT chain on `output`: connections to a link's address and port are
/// sent to one of its backends.
pub const CHAIN_LINKS: &str = "links";
/// NAT chain on `postrouting`: linked connections leave with the pod's own
/// address instead of 127.0.0.1.
pub const CHAIN_SNAT: &str = "links_snat";
/// Filter chain on `input`: nothing from outside reaches the pod's
/// loopback addresses (which `route_localnet` would otherwise allow).
pub const CHAIN_INPUT: &str = "links_in";
/// Filter chain on `output`: the outbound policy.
pub const CHAIN_EGRESS: &str = "egress";
/// The set of every link's (address, port), for the links-only policy.
pub const SET_LINKED: &str = "linked";
/// The prefix of the maps of links with a given number of backends.
pub const MAP_BACKENDS: &str = "backends_";

/// One ready backend of a link: a host address and a host port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Backend {
    /// The node's address.
    pub address: Ipv4Addr,
    /// The host port the backend's container port is published on.
    pub port: u16,
}

/// A link and its ready backends.
pub type LinkBackends = (Link, Vec<Backend>);

/// What one pod should have: its links, each with its ready backends, and
/// its outbound policy.
#[derive(Debug, Clone)]
pub struct PodWiring {
    /// Links with their backends, in the service's order.
    links: Vec<LinkBackends>,
    /// The outbound policy.
    egress: EgressPolicy,
    /// Digests of runs of links, for finding those another wiring changed.
    footprint: Footprint,
    /// Whether some link is on 127.0.0.1 (known when built: a converge
    /// asks each time, and a scan would read every link).
    on_loopback: bool,
}

impl PodWiring {
    /// The wiring of `links` (in the service's order) under `egress`.
    pub fn new(links: Vec<LinkBackends>, egress: EgressPolicy) -> Self {
        let footprint = Footprint::of(&links);
        let on_loopback = links.iter().any(|(link, _)| link.address.is_none());
        Self {
            links,
            egress,
            footprint,
            on_loopback,
        }
    }

    /// Whether some link is on 127.0.0.1: only those need loopback
    /// traffic to leave the pod (`route_localnet`).
    pub fn on_loopback(&self) -> bool {
        self.on_loopback
    }

    /// The links with their backends.
    pub fn links(&self) -> &[LinkBackends] {
        &self.links
    }

    /// The outbound policy.
    pub fn egress(&self) -> EgressPolicy {
        self.egress
    }

    /// Whether the pod needs no rule at all.
    pub fn is_empty(&self) -> bool {
        self.links.is_empty() && self.egress.is_open()
    }
}

// The footprint follows from the links: comparing it too would only
// repeat the work.
impl PartialEq for PodWiring {
    fn eq(&self, other: &Self) -> bool {
        self.egress == other.egress && self.links == other.links
    }
}

impl Eq for PodWiring {}

impl Default for PodWiring {
    fn default() -> Self {
        Self::new(Vec::new(), EgressPolicy::default())
    }
}

/// Digests of what the links' elements depend on (each link's local
/// address and port, and its backends), one for each run of [`CHUNK`]
/// links counted from the first and one for each counted from the last,
/// built with the wiring. Two wirings find the links they have alike at
/// either end by comparing digests, then link by link within the one run
/// that differs: with 20,000 links a few kilobytes read, where the flat
/// arrays of every link compared before streamed a megabyte (20-70 us,
/// as much as the change itself).
///
/// Digests are keyed with this process's random seed (foldhash), never
/// leave the process, and so cannot be aimed at; runs whose digests
/// differ always differ. Two runs that differ but collide (about one
/// chance in 2^64) would leave a change unapplied until the next resync
/// compares the table whole.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Footprint {
    /// How many links each digest covers.
    chunk: usize,
    /// Digests of links `[i * chunk, (i + 1) * chunk)`, for every whole run.
    from_first: Vec<u64>,
    /// Digests of the runs counted from the last link: `from_last[0]` is
    /// that of the last `chunk` links.
    from_last: Vec<u64>,
}

/// Links per digest: 20,000 links have 312 digests each way, and a change
/// is found within one run of 64.
const CHUNK: usize = 64;

impl Footprint {
    fn of(links: &[LinkBackends]) -> Self {
        Self::chunked(links, CHUNK)
    }

    fn chunked(links: &[LinkBackends], chunk: usize) -> Self {
        // One pass over the links, each digested alone; the runs' digests
        // are then taken over those, which sit together in memory.
        let each: Vec<u64> = links.iter().map(digest_link).collect();
        let n = each.len();
        let runs = n / chunk;
        let of_run = |run: &[u64]| {
            let mut hasher = hasher();
            run.iter().for_each(|&d| hasher.write_u64(d));
            hasher.finish()
        };
        Self {
            chunk,
            from_first: (0..runs)
                .map(|run| of_run(&each[run * chunk..(run + 1) * chunk]))
                .collect(),
            from_last: (0..runs)
                .map(|run| of_run(&each[n - (run + 1) * chunk..n - run * chunk]))
                .collect(),
        }
    }
}

/// A hasher keyed with this process's seed.
fn hasher() -> impl Hasher {
    static KEY: OnceLock<RandomState> = OnceLock::new();
    KEY.get_or_init(RandomState::default).build_hasher()
}

/// The digest of what a link's elements depend on: one 64-bit word for
/// its address and port, one for its number of backends, and one for
/// each backend.
fn digest_link((link, backends): &LinkBackends) -> u64 {
    let word = |address: Ipv4Addr, port: u16| u64::from(u32::from(address)) << 16 | u64::from(port);
    let mut hasher = hasher();
    hasher.write_u64(word(link.local_address(), link.local_port()));
    hasher.write_u64(backends.len() as u64);
    for backend in backends {
        hasher.write_u64(word(backend.address, backend.port));
    }
    hasher.finish()
}

/// Whether two links have the same elements.
fn alike(a: &LinkBackends, b: &LinkBackends) -> bool {
    a.0.local_address() == b.0.local_address() && a.0.local_port() == b.0.local_port() && a.1 == b.1
}

/// How many links, from the first, `old` and `new` have alike.
fn common_prefix(old: &PodWiring, new: &PodWiring) -> usize {
    let (o, n) = (&old.footprint, &new.footprint);
    debug_assert_eq!(o.chunk, n.chunk);
    let known = first_mismatch(&o.from_first, &n.from_first) * o.chunk;
    known
        + old.links[known..]
            .iter()
            .zip(&new.links[known..])
            .take_while(|(a, b)| alike(a, b))
            .count()
}

/// How many links, from the last, `old` and `new` have alike, up to
/// `room`.
fn common_suffix(old: &PodWiring, new: &PodWiring, room: usize) -> usize {
    let (o, n) = (&old.footprint, &new.footprint);
    debug_assert_eq!(o.chunk, n.chunk);
    let known = (first_mismatch(&o.from_last, &n.from_last) * o.chunk).min(room);
    let (a, b) = (&old.links, &new.links);
    known
        + a[..a.len() - known]
            .iter()
            .rev()
            .zip(b[..b.len() - known].iter().rev())
            .take(room - known)
            .take_while(|(a, b)| alike(a, b))
            .count()
}

/// Slices are compared this many items at a time (one `memcmp` each).
const BLOCK: usize = 32;

/// Where `a` and `b` first differ, or the shorter one's length.
fn first_mismatch<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    let len = a.len().min(b.len());
    let mut i = 0;
    while i + BLOCK <= len && a[i..i + BLOCK] == b[i..i + BLOCK] {
        i += BLOCK;
    }
    i + a[i..len]
        .iter()
        .zip(&b[i..len])
        .take_while(|(x, y)| x == y)
        .count()
}

/// A chain of berth's table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// Where it hangs.
    pub base: BaseChain,
    /// Its rules, in order.
    pub rules: Vec<Vec<Expr>>,
}

/// A set or map of berth's table, with its elements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Set {
    /// Its types.
    pub spec: SetSpec,
    /// Key -> data (empty for a plain set).
    pub elements: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// What berth's table should hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ruleset {
    /// Chains by name.
    pub chains: BTreeMap<String, Chain>,
    /// Sets and maps by name.
    pub sets: BTreeMap<String, Set>,
}

/// An address and port as a concatenation's first two parts (a port is
/// padded to 4 bytes).
fn address_port(address: Ipv4Addr, port: u16) -> Vec<u8> {
    let mut bytes = address.octets().to_vec();
    bytes.extend_from_slice(&port.to_be_bytes());
    bytes.extend_from_slice(&[0, 0]);
    bytes
}

/// The key of slot `slot` of a link in its backends map: the numgen
/// value is a host-order word in the register.
pub fn backend_key(link: &Link, slot: u32) -> Vec<u8> {
    let mut key = address_port(link.local_address(), link.local_port());
    key.extend_from_slice(&slot.to_ne_bytes());
    key
}

/// The data of a backend in a backends map.
pub fn backend_data(backend: &Backend) -> Vec<u8> {
    address_port(backend.address, backend.port)
}

/// The name of the map of links with `k` backends.
pub fn backends_map(k: usize) -> String {
    format!("{MAP_BACKENDS}{k}")
}

fn tcp() -> [Expr; 2] {
    [
        Expr::Meta {
            key: MetaKey::L4Proto,
            dreg: reg::R1,
        },
        Expr::Cmp {
            sreg: reg::R1,
            op: CmpOp::Eq,
            data: vec![6],
        },
    ]
}

/// `ip saddr|daddr 127.0.0.0/8`: the first byte of the address.
fn loopback_net(offset: u32) -> [Expr; 2] {
    [
        Expr::Payload {
            base: PayloadBase::Network,
            offset,
            len: 1,
            dreg: reg::R1,
        },
        Expr::Cmp {
            sreg: reg::R1,
            op: CmpOp::Eq,
            data: vec![127],
        },
    ]
}

fn interface(key: MetaKey, op: CmpOp, name: &str) -> [Expr; 2] {
    [
        Expr::Meta { key, dreg: reg::R1 },
        Expr::Cmp {
            sreg: reg::R1,
            op,
            data: ifname(name),
        },
    ]
}

/// `ct <key> & mask <op> 0`.
fn ct_bits(key: CtKey, mask: u32, op: CmpOp) -> [Expr; 3] {
    [
        Expr::Ct { key, dreg: reg::R1 },
        Expr::And {
            reg: reg::R1,
            mask: mask.to_ne_bytes().to_vec(),
        },
        Expr::Cmp {
            sreg: reg::R1,
            op,
            data: vec![0; 4],
        },
    ]
}

/// `ct state` bits of established and related connections.
const CT_ESTABLISHED_RELATED: u32 = 0x2 | 0x4;
/// `ct status` bit of a destination-NATed connection.
const CT_STATUS_DNAT: u32 = 0x20;

/// The DNAT rule for links with `k` backends.
fn links_rule(k: usize) -> Vec<Expr> {
    let mut rule = tcp().to_vec();
    rule.extend([
        Expr::Payload {
            base: PayloadBase::Network,
            offset: 16,
            len: 4,
            dreg: reg::R1,
        },
        Expr::Payload {
            base: PayloadBase::Transport,
            offset: 2,
            len: 2,
            dreg: reg::R32_01,
        },
        Expr::NumgenRandom {
            dreg: reg::R32_02,
            modulus: k as u32,
        },
        Expr::Lookup {
            set: backends_map(k),
            sreg: reg::R1,
            dreg: Some(reg::R1),
        },
        Expr::Dnat {
            addr: reg::R1,
            port: reg::R32_01,
        },
    ]);
    rule
}

/// What berth's table should hold for `wiring`, or `None` when the pod
/// needs no table at all.
pub fn desired(wiring: &PodWiring) -> Option<Ruleset> {
    if wiring.is_empty() {
        return None;
    }
    let mut ruleset = Ruleset::default();
    let backends_spec = SetSpec {
        key_type: datatype::concat(&[datatype::IPV4_ADDR, datatype::INET_SERVICE, datatype::MARK]),
        key_len: 12,
        data: Some((
            datatype::concat(&[datatype::IPV4_ADDR, datatype::INET_SERVICE]),
            8,
        )),
    };
    // The first link on an address and port wins, as the first of two
    // iptables rules did.
    let mut seen = BTreeSet::new();
    let mut linked = BTreeMap::new();
    for (link, backends) in &wiring.links {
        let local = (link.local_address(), link.local_port());
        if !seen.insert(local) {
            continue;
        }
        linked.insert(address_port(local.0, local.1), Vec::new());
        let mut backends = backends.clone();
        backends.sort();
        backends.dedup();
        if backends.is_empty() {
            continue;
        }
        let map = ruleset
            .sets
            .entry(backends_map(backends.len()))
            .or_insert_with(|| Set {
                spec: backends_spec.clone(),
                elements: BTreeMap::new(),
            });
        for (slot, backend) in backends.iter().enumerate() {
            map.elements
                .insert(backend_key(link, slot as u32), backend_data(backend));
        }
    }
    let counts: Vec<usize> = ruleset
        .sets
        .keys()
        .filter_map(|name| name.strip_prefix(MAP_BACKENDS)?.parse().ok())
        .collect::<BTreeSet<usize>>()
        .into_iter()
        .collect();
    ruleset.chains.insert(
        CHAIN_LINKS.into(),
        Chain {
            base: BaseChain {
                kind: ChainType::Nat,
                hook: Hook::Output,
                priority: -100,
            },
            rules: counts.into_iter().map(links_rule).collect(),
        },
    );
    // Linked connections start from 127.0.0.1; off the loopback interface
    // they must carry the pod's address, or replies could not return.
    let mut snat = loopback_net(12).to_vec();
    snat.extend(interface(MetaKey::OifName, CmpOp::Neq, "lo"));
    snat.extend(ct_bits(CtKey::Status, CT_STATUS_DNAT, CmpOp::Neq));
    snat.push(Expr::Masquerade);
    ruleset.chains.insert(
        CHAIN_SNAT.into(),
        Chain {
            base: BaseChain {
                kind: ChainType::Nat,
                hook: Hook::Postrouting,
                priority: 100,
            },
            rules: vec![snat],
        },
    );
    // route_localnet lets 127/8 cross interfaces: refuse new connections
    // to the pod's loopback from outside (CVE-2020-8558); replies to
    // linked connections are established and pass. Every packet the pod
    // receives meets this rule, and nearly all are established: that test
    // comes first, so they leave it after one match.
    let mut guard = ct_bits(CtKey::State, CT_ESTABLISHED_RELATED, CmpOp::Eq).to_vec();
    guard.extend(loopback_net(16));
    guard.extend(interface(MetaKey::IifName, CmpOp::Neq, "lo"));
    guard.push(Expr::Verdict(Verdict::Drop));
    ruleset.chains.insert(
        CHAIN_INPUT.into(),
        Chain {
            base: BaseChain {
                kind: ChainType::Filter,
                hook: Hook::Input,
                priority: 0,
            },
            rules: vec![guard],
        },
    );
    if wiring.egress == EgressPolicy::LinksOnly {
        let mut lo = interface(MetaKey::OifName, CmpOp::Eq, "lo").to_vec();
        lo.push(Expr::Verdict(Verdict::Accept));
        let mut replies = ct_bits(CtKey::State, CT_ESTABLISHED_RELATED, CmpOp::Neq).to_vec();
        replies.push(Expr::Verdict(Verdict::Accept));
        let mut links = tcp().to_vec();
        links.extend(ct_bits(CtKey::Status, CT_STATUS_DNAT, CmpOp::Neq));
        links.extend([
            Expr::Ct {
                key: CtKey::DstIp,
                dreg: reg::R1,
            },
            Expr::Ct {
                key: CtKey::ProtoDst,
                dreg: reg::R32_01,
            },
            Expr::Lookup {
                set: SET_LINKED.into(),
                sreg: reg::R1,
                dreg: None,
            },
            Expr::Verdict(Verdict::Accept),
        ]);
        ruleset.chains.insert(
            CHAIN_EGRESS.into(),
            Chain {
                base: BaseChain {
                    kind: ChainType::Filter,
                    hook: Hook::Output,
                    priority: 0,
                },
                rules: vec![lo, replies, links, vec![Expr::RejectPortUnreachable]],
            },
        );
        ruleset.sets.insert(
            SET_LINKED.into(),
            Set {
                spec: SetSpec {
                    key_type: datatype::concat(&[datatype::IPV4_ADDR, datatype::INET_SERVICE]),
                    key_len: 8,
                    data: None,
                },
                elements: linked,
            },
        );
    }
    Some(ruleset)
}

/// How many distinct backends a link has (without sorting: a link has
/// few): the map it lives in.
fn distinct(backends: &[Backend]) -> usize {
    backends
        .iter()
        .enumerate()
        .filter(|(i, b)| !backends[..*i].contains(b))
        .count()
}

/// When `new` differs from `old` (what the namespace was last converged
/// to) only in links, with the same backend counts and the same policy,
/// the element changes that get there, computed from the links that
/// changed alone: adding a link to 20,000 costs what adding the first
/// does. `None` when the rules must change too (then [`changes`] from
/// [`Observed::of`] the old table). Link addresses and ports are unique
/// in a pod (the model refuses two links on one), so the elements of the
/// changed links are theirs alone.
pub fn changes_since(old: &PodWiring, new: &PodWiring) -> Option<Vec<Change>> {
    if old.is_empty() || new.is_empty() || old.egress != new.egress {
        return None;
    }
    let (o, n) = (&old.links, &new.links);
    // Elements depend on a link's address, port and backends only: their
    // footprints are compared.
    let prefix = common_prefix(old, new);
    let room = o.len().min(n.len()) - prefix;
    let suffix = common_suffix(old, new, room);
    // The rules stay as they are when every backend count the changed
    // links had or have is had by both wirings: by a changed link on
    // both sides, or by an unchanged one (found at once when most links
    // have as many backends as the new one).
    let counts = |links: &[(Link, Vec<Backend>)]| -> BTreeSet<usize> {
        links[prefix..links.len() - suffix]
            .iter()
            .map(|(_, b)| distinct(b))
            .filter(|k| *k > 0)
            .collect()
    };
    let (was, will) = (counts(o), counts(n));
    let kept = || o[..prefix].iter().chain(&o[o.len() - suffix..]);
    if was
        .symmetric_difference(&will)
        .any(|k| !kept().any(|(_, b)| distinct(b) == *k))
    {
        return None;
    }
    let region = |links: &[(Link, Vec<Backend>)]| {
        let links = links[prefix..links.len() - suffix].to_vec();
        desired(&PodWiring::new(links, new.egress))
            .map(|r| r.sets)
            .unwrap_or_default()
    };
    let (before, after) = (region(o), region(n));
    let mut deleted = Vec::new();
    let mut added = Vec::new();
    let names: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    let none = BTreeMap::new();
    for name in names {
        let was = before.get(name).map_or(&none, |s| &s.elements);
        let will = after.get(name).map_or(&none, |s| &s.elements);
        let gone: Vec<Vec<u8>> = was
            .iter()
            .filter(|(k, d)| will.get(*k) != Some(*d))
            .map(|(k, _)| k.clone())
            .collect();
        let new: Vec<(Vec<u8>, Vec<u8>)> = will
            .iter()
            .filter(|(k, d)| was.get(*k) != Some(*d))
            .map(|(k, d)| (k.clone(), d.clone()))
            .collect();
        if !gone.is_empty() {
            deleted.push(Change::DelElements(name.clone(), gone));
        }
        if !new.is_empty() {
            added.push(Change::AddElements(name.clone(), new));
        }
    }
    deleted.extend(added);
    Some(deleted)
}

/// A rule's user data: nftables' comment record (type 0, length, text
/// with its NUL) holding `berth:<hash of the chain and the rule>`.
pub fn tag(chain: &str, rule: &[Expr]) -> Vec<u8> {
    let mut hasher = sha2::Sha256::new();
    hasher.update(chain.as_bytes());
    hasher.update(b"\n");
    hasher.update(format!("{rule:?}").as_bytes());
    let hex: String = hasher.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let comment = format!("berth:{hex}\0");
    let mut userdata = vec![0, comment.len() as u8];
    userdata.extend_from_slice(comment.as_bytes());
    userdata
}

/// What berth's table in a namespace holds, as read back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// Whether the table exists.
    pub table: bool,
    /// Each chain's rules' user data, in order.
    pub chains: BTreeMap<String, Vec<Vec<u8>>>,
    /// Each set's elements.
    pub sets: BTreeMap<String, BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl Observed {
    /// What a namespace holds once converged to `desired`: the starting
    /// point of a change made without reading the table back.
    pub fn of(desired: Option<&Ruleset>) -> Self {
        let Some(desired) = desired else {
            return Self::default();
        };
        Self {
            table: true,
            chains: desired
                .chains
                .iter()
                .map(|(name, chain)| {
                    let tags = chain.rules.iter().map(|r| tag(name, r)).collect();
                    (name.clone(), tags)
                })
                .collect(),
            sets: desired
                .sets
                .iter()
                .map(|(name, set)| (name.clone(), set.elements.clone()))
                .collect(),
        }
    }
}

/// The changes that bring the table from `observed` to `desired` (`None`:
/// no table), in an order the kernel accepts in one batch: sets before
/// the rules that use them, rules gone before their sets and chains go.
/// Empty when the table is already there.
pub fn changes(desired: Option<&Ruleset>, observed: &Observed) -> Vec<Change> {
    let Some(desired) = desired else {
        return if observed.table {
            vec![Change::DelTable]
        } else {
            Vec::new()
        };
    };
    let empty = Observed::default();
    let observed = if observed.table { observed } else { &empty };
    let mut out = Vec::new();
    if !observed.table {
        out.push(Change::AddTable);
    }
    let mut added_elements = Vec::new();
    let mut deleted_elements = Vec::new();
    for (name, set) in &desired.sets {
        match observed.sets.get(name) {
            None => {
                out.push(Change::AddSet(name.clone(), set.spec.clone()));
                added_elements.push(Change::AddElements(
                    name.clone(),
                    set.elements
                        .iter()
                        .map(|(k, d)| (k.clone(), d.clone()))
                        .collect(),
                ));
            }
            Some(seen) => {
                // A key whose data changed is deleted and added again: the
                // kernel refuses to overwrite an element.
                let gone: Vec<Vec<u8>> = seen
                    .iter()
                    .filter(|(k, d)| set.elements.get(*k) != Some(*d))
                    .map(|(k, _)| k.clone())
                    .collect();
                let new: Vec<(Vec<u8>, Vec<u8>)> = set
                    .elements
                    .iter()
                    .filter(|(k, d)| seen.get(*k) != Some(*d))
                    .map(|(k, d)| (k.clone(), d.clone()))
                    .collect();
                if !gone.is_empty() {
                    deleted_elements.push(Change::DelElements(name.clone(), gone));
                }
                if !new.is_empty() {
                    added_elements.push(Change::AddElements(name.clone(), new));
                }
            }
        }
    }
    out.extend(deleted_elements);
    out.extend(added_elements);
    let mut rules = Vec::new();
    for (name, chain) in &desired.chains {
        let tags: Vec<Vec<u8>> = chain.rules.iter().map(|r| tag(name, r)).collect();
        match observed.chains.get(name) {
            Some(seen) if *seen == tags => continue,
            Some(_) => out.push(Change::FlushChain(name.clone())),
            None => out.push(Change::AddChain(name.clone(), chain.base)),
        }
        for (rule, userdata) in chain.rules.iter().zip(tags) {
            rules.push(Change::AddRule {
                chain: name.clone(),
                exprs: rule.clone(),
                userdata,
            });
        }
    }
    let stale_chains: Vec<&String> = observed
        .chains
        .keys()
        .filter(|c| !desired.chains.contains_key(*c))
        .collect();
    out.extend(
        stale_chains
            .iter()
            .map(|c| Change::FlushChain((*c).clone())),
    );
    out.extend(rules);
    out.extend(
        observed
            .sets
            .keys()
            .filter(|s| !desired.sets.contains_key(*s))
            .map(|s| Change::DelSet(s.clone())),
    );
    out.extend(
        stale_chains
            .into_iter()
            .map(|c| Change::DelChain(c.clone())),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(service: &str, port: u16, local_port: Option<u16>) -> Link {
        Link {
            service: service.into(),
            port,
            local_port,
            address: None,
            wait_ready: false,
        }
    }

    fn backend(last: u8, port: u16) -> Backend {
        Backend {
            address: Ipv4Addr::new(10, 231, 0, last),
            port,
        }
    }

    fn wiring(links: Vec<(Link, Vec<Backend>)>, egress: EgressPolicy) -> PodWiring {
        PodWiring::new(links, egress)
    }

    /// The table after `changes` are applied to `observed` (what the
    /// kernel does, for the changes berth makes).
    fn apply(observed: &Observed, changes: &[Change]) -> Observed {
        let mut o = observed.clone();
        for change in changes {
            match change {
                Change::AddTable => o.table = true,
                Change::DelTable => o = Observed::default(),
                Change::AddSet(name, _) => {
                    assert!(o.sets.insert(name.clone(), BTreeMap::new()).is_none());
                }
                Change::DelSet(name) => {
                    o.sets.remove(name).expect("the set");
                }
                Change::AddElements(set, elements) => {
                    let set = o.sets.get_mut(set).expect("the set");
                    for (k, d) in elements {
                        assert!(set.insert(k.clone(), d.clone()).is_none(), "overwritten");
                    }
                }
                Change::DelElements(set, keys) => {
                    let set = o.sets.get_mut(set).expect("the set");
                    for k in keys {
                        set.remove(k).expect("the element");
                    }
                }
                Change::AddChain(name, _) => {
                    assert!(o.chains.insert(name.clone(), Vec::new()).is_none());
                }
                Change::DelChain(name) => {
                    assert_eq!(o.chains.remove(name), Some(Vec::new()), "deleted non-empty");
                }
                Change::FlushChain(name) => o.chains.get_mut(name).expect("the chain").clear(),
                Change::AddRule {
                    chain, userdata, ..
                } => o
                    .chains
                    .get_mut(chain)
                    .expect("the chain")
                    .push(userdata.clone()),
            }
        }
        o
    }

    #[test]
    fn backends_share_new_connections_evenly() {
        let w = wiring(
            vec![
                (
                    link("db", 3306, None),
                    vec![backend(13, 30002), backend(12, 30001), backend(14, 30003)],
                ),
                (link("cache", 6379, None), vec![backend(12, 30009)]),
            ],
            EgressPolicy::Open,
        );
        let r = desired(&w).expect("a table");
        // One rule per backend count, spreading over that many slots.
        assert_eq!(
            r.chains[CHAIN_LINKS].rules,
            vec![links_rule(1), links_rule(3)]
        );
        assert!(
            r.chains[CHAIN_LINKS].rules[1].contains(&Expr::NumgenRandom {
                dreg: reg::R32_02,
                modulus: 3
            })
        );
        let three = &r.sets["backends_3"].elements;
        assert_eq!(three.len(), 3);
        let db = link("db", 3306, None);
        assert_eq!(
            three[&backend_key(&db, 0)],
            vec![10, 231, 0, 12, 0x75, 0x31, 0, 0]
        );
        assert_eq!(
            three[&backend_key(&db, 2)],
            backend_data(&backend(14, 30003))
        );
        assert_eq!(backend_key(&db, 1)[..8], [127, 0, 0, 1, 0x0c, 0xea, 0, 0]);
        assert_eq!(r.sets["backends_1"].elements.len(), 1);
        assert!(!r.chains.contains_key(CHAIN_EGRESS));
        assert!(!r.sets.contains_key(SET_LINKED));
    }

    #[test]
    fn links_only_accepts_loopback_replies_and_each_link_then_rejects() {
        let mut stable = link("db", 3306, Some(13306));
        stable.address = Some(Ipv4Addr::new(169, 254, 10, 1));
        let w = wiring(
            vec![(stable, vec![backend(12, 30001)])],
            EgressPolicy::LinksOnly,
        );
        let r = desired(&w).expect("a table");
        let egress = &r.chains[CHAIN_EGRESS].rules;
        assert_eq!(egress.len(), 4);
        assert_eq!(egress[3], vec![Expr::RejectPortUnreachable]);
        assert_eq!(
            r.sets[SET_LINKED].elements.keys().collect::<Vec<_>>(),
            vec![&vec![169, 254, 10, 1, 0x33, 0xfa, 0, 0]]
        );
        // A policy alone, without links, still needs the table.
        assert!(desired(&wiring(vec![], EgressPolicy::LinksOnly)).is_some());
        assert_eq!(desired(&PodWiring::default()), None);
    }

    #[test]
    fn an_applied_plan_is_stable_and_a_flush_or_a_deleted_table_comes_back() {
        let w = wiring(
            vec![(link("db", 3306, None), vec![backend(12, 30001)])],
            EgressPolicy::LinksOnly,
        );
        let r = desired(&w);
        let first = changes(r.as_ref(), &Observed::default());
        assert_eq!(first[0], Change::AddTable);
        let applied = apply(&Observed::default(), &first);
        assert_eq!(applied, Observed::of(r.as_ref()));
        assert_eq!(changes(r.as_ref(), &applied), vec![]);

        // `nft flush table ip berth`: rules gone, sets and chains kept;
        // only the rules come back.
        let mut flushed = applied.clone();
        flushed.chains.values_mut().for_each(Vec::clear);
        let repair = changes(r.as_ref(), &flushed);
        assert!(repair
            .iter()
            .all(|c| matches!(c, Change::FlushChain(_) | Change::AddRule { .. })));
        assert_eq!(apply(&flushed, &repair), applied);

        // A map flushed: its elements come back, nothing else is written.
        let mut emptied = applied.clone();
        emptied.sets.get_mut("backends_1").unwrap().clear();
        let refill = changes(r.as_ref(), &emptied);
        assert!(
            matches!(refill.as_slice(), [Change::AddElements(set, e)] if set == "backends_1" && e.len() == 1)
        );

        // `nft delete table ip berth`: everything again.
        assert_eq!(changes(r.as_ref(), &Observed::default()), first);
    }

    #[test]
    fn adding_a_link_only_adds_elements() {
        let one = wiring(
            vec![(link("db", 3306, None), vec![backend(12, 30001)])],
            EgressPolicy::LinksOnly,
        );
        let mut links = one.links().to_vec();
        links.push((link("cache", 6379, None), vec![backend(13, 30002)]));
        let two = wiring(links, one.egress());
        let c = changes(
            desired(&two).as_ref(),
            &Observed::of(desired(&one).as_ref()),
        );
        assert_eq!(c.len(), 2, "{c:?}");
        assert!(c
            .iter()
            .all(|c| matches!(c, Change::AddElements(_, e) if e.len() == 1)));
    }

    #[test]
    fn a_moved_backend_replaces_its_element_and_a_new_count_adds_a_rule() {
        let one = wiring(
            vec![(link("db", 3306, None), vec![backend(12, 30001)])],
            EgressPolicy::Open,
        );
        let before = Observed::of(desired(&one).as_ref());
        let moved = wiring(
            vec![(link("db", 3306, None), vec![backend(13, 30005)])],
            EgressPolicy::Open,
        );
        let c = changes(desired(&moved).as_ref(), &before);
        assert!(matches!(
            c.as_slice(),
            [Change::DelElements(..), Change::AddElements(..)]
        ));
        assert_eq!(apply(&before, &c), Observed::of(desired(&moved).as_ref()));

        // Scaled to two backends: the link moves to backends_2, whose
        // rule and map are new; backends_1 and its rule go.
        let scaled = wiring(
            vec![(
                link("db", 3306, None),
                vec![backend(13, 30005), backend(14, 30006)],
            )],
            EgressPolicy::Open,
        );
        let c = changes(desired(&scaled).as_ref(), &before);
        assert_eq!(apply(&before, &c), Observed::of(desired(&scaled).as_ref()));
        assert!(c.contains(&Change::DelSet("backends_1".into())));
        let add_set = c.iter().position(|c| matches!(c, Change::AddSet(..)));
        let add_rule = c.iter().position(|c| matches!(c, Change::AddRule { .. }));
        let del_set = c.iter().position(|c| matches!(c, Change::DelSet(..)));
        assert!(add_set < add_rule && add_rule < del_set, "{c:?}");
    }

    #[test]
    fn removal_deletes_the_table_and_policy_off_drops_its_chain() {
        let guarded = wiring(
            vec![(link("db", 3306, None), vec![backend(12, 30001)])],
            EgressPolicy::LinksOnly,
        );
        let before = Observed::of(desired(&guarded).as_ref());
        assert_eq!(changes(None, &before), vec![Change::DelTable]);
        assert_eq!(changes(None, &Observed::default()), vec![]);

        let open = wiring(guarded.links().to_vec(), EgressPolicy::Open);
        let c = changes(desired(&open).as_ref(), &before);
        assert_eq!(apply(&before, &c), Observed::of(desired(&open).as_ref()));
        assert!(c.contains(&Change::DelChain(CHAIN_EGRESS.into())));
        assert!(c.contains(&Change::DelSet(SET_LINKED.into())));
    }

    #[test]
    fn footprints_find_the_links_alike_at_both_ends_as_a_link_by_link_comparison_does() {
        // Small wirings from a pool of few values, so that most pairs
        // share some links and some arrays match by accident.
        let mut seed = 7u64;
        let mut next = move |below: u64| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % below
        };
        let mut wirings = Vec::new();
        for _ in 0..300 {
            let links: Vec<LinkBackends> = (0..next(10))
                .map(|_| {
                    let port = 8000 + next(3) as u16;
                    let backends = (0..next(3))
                        .map(|_| backend(12, 30000 + next(2) as u16))
                        .collect();
                    (link("s", port, None), backends)
                })
                .collect();
            wirings.push(links);
        }
        let same =
            |a: &LinkBackends, b: &LinkBackends| a.0.local_port() == b.0.local_port() && a.1 == b.1;
        for a in &wirings {
            for b in &wirings {
                let prefix = a.iter().zip(b).take_while(|(x, y)| same(x, y)).count();
                let room = a.len().min(b.len()) - prefix;
                let suffix = a
                    .iter()
                    .rev()
                    .zip(b.iter().rev())
                    .take(room)
                    .take_while(|(x, y)| same(x, y))
                    .count();
                // Runs of one link, of a few, and longer than the wirings.
                for chunk in [1, 2, 3, CHUNK] {
                    let chunked = |links: &Vec<LinkBackends>| PodWiring {
                        footprint: Footprint::chunked(links, chunk),
                        ..PodWiring::new(links.clone(), EgressPolicy::Open)
                    };
                    let (wa, wb) = (chunked(a), chunked(b));
                    assert_eq!(common_prefix(&wa, &wb), prefix, "{chunk} {a:?} {b:?}");
                    assert_eq!(common_suffix(&wa, &wb, room), suffix, "{chunk} {a:?} {b:?}");
                }
            }
        }
    }

    #[test]
    fn a_mismatch_is_found_wherever_it_falls_in_or_across_blocks() {
        let a: Vec<u64> = (0..100).collect();
        for len in [0, 1, 31, 32, 33, 64, 99, 100] {
            let b = &a[..len];
            assert_eq!(first_mismatch(&a, b), len);
            for at in 0..len {
                let mut c = b.to_vec();
                c[at] += 1000;
                assert_eq!(first_mismatch(b, &c), at, "len {len}, at {at}");
            }
        }
    }

    #[test]
    fn changes_since_the_last_wiring_match_a_full_comparison() {
        let base: Vec<(Link, Vec<Backend>)> = (0..6)
            .map(|i| {
                (
                    link(&format!("s{i}"), 8000 + i, None),
                    vec![backend(12, 30000 + i)],
                )
            })
            .collect();
        let old = wiring(base.clone(), EgressPolicy::LinksOnly);
        let full =
            |new: &PodWiring| changes(desired(new).as_ref(), &Observed::of(desired(&old).as_ref()));
        let before = Observed::of(desired(&old).as_ref());
        let mut cases = Vec::new();
        // Appended, removed from the middle, one backend moved.
        let mut appended = base.clone();
        appended.push((link("new", 9000, None), vec![backend(13, 31000)]));
        cases.push(wiring(appended, EgressPolicy::LinksOnly));
        let mut removed = base.clone();
        removed.remove(2);
        cases.push(wiring(removed, EgressPolicy::LinksOnly));
        let mut moved = base.clone();
        moved[4].1 = vec![backend(14, 31001)];
        cases.push(wiring(moved, EgressPolicy::LinksOnly));
        // Two links' backends swapped: the flat array of backends holds
        // the same values, in another order.
        let mut swapped = base.clone();
        let (first, second) = (swapped[1].1.clone(), swapped[3].1.clone());
        (swapped[1].1, swapped[3].1) = (second, first);
        cases.push(wiring(swapped, EgressPolicy::LinksOnly));
        for new in &cases {
            let quick = changes_since(&old, new).expect("only elements change");
            assert_eq!(apply(&before, &quick), apply(&before, &full(new)));
            assert_eq!(apply(&before, &quick), Observed::of(desired(new).as_ref()));
        }
        assert!(changes_since(&old, &old).expect("nothing").is_empty());
        // A new backend count, another policy, or no links: not elements alone.
        let mut two = base.clone();
        two[0].1.push(backend(15, 31002));
        assert_eq!(
            changes_since(&old, &wiring(two, EgressPolicy::LinksOnly)),
            None
        );
        let open = wiring(base.clone(), EgressPolicy::Open);
        assert_eq!(changes_since(&old, &open), None);
        assert_eq!(changes_since(&PodWiring::default(), &old), None);
    }

    #[test]
    fn a_tag_is_an_nft_comment() {
        let t = tag(CHAIN_LINKS, &links_rule(1));
        assert_eq!(t[0], 0);
        assert_eq!(usize::from(t[1]), t.len() - 2);
        assert!(t[2..].starts_with(b"berth:"));
        assert_eq!(t.last(), Some(&0));
        assert_ne!(t, tag(CHAIN_LINKS, &links_rule(2)));
    }
}
