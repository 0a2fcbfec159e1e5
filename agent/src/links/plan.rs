//! The pure half of links: which NAT and filter rules a pod's network
//! namespace should hold for its links, its ready backends and its
//! outbound policy, and the `iptables-restore --noflush` script that gets
//! it there from what `iptables-save` shows. No I/O here.
//!
//! Every rule berth writes carries a tag, `-m comment --comment
//! berth:<hash of the rule>`, so the observed chains are compared without
//! parsing iptables' own spelling of each rule: a chain someone flushed,
//! edited or extended has the wrong set of tags and is written again. The
//! tags also let a new link be appended without reading the chain back
//! (see [`append_script`]): the result is what a full write would give.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use berth_model::{EgressPolicy, Link};
use sha2::Digest as _;

/// NAT chain jumped to from `OUTPUT`: connections to 127.0.0.1:<local
/// port> are sent to a backend.
pub const NAT_LINKS: &str = "BERTH-LINKS";
/// NAT chain jumped to from `POSTROUTING`: linked connections leave with
/// the pod's own address instead of 127.0.0.1.
pub const NAT_SNAT: &str = "BERTH-LINKS-SNAT";
/// Filter chain jumped to from `INPUT`: nothing from outside reaches the
/// pod's loopback addresses (which `route_localnet` would otherwise allow).
pub const FILTER_INPUT: &str = "BERTH-LINKS-IN";
/// Filter chain jumped to from `OUTPUT`: the outbound policy.
pub const FILTER_EGRESS: &str = "BERTH-EGRESS";

/// Where a berth chain hangs: (table, built-in chain, berth chain).
pub const CHAINS: [(&str, &str, &str); 4] = [
    ("nat", "OUTPUT", NAT_LINKS),
    ("nat", "POSTROUTING", NAT_SNAT),
    ("filter", "INPUT", FILTER_INPUT),
    ("filter", "OUTPUT", FILTER_EGRESS),
];

/// One ready backend of a link: a host address and a host port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Backend {
    /// The node's address.
    pub address: Ipv4Addr,
    /// The host port the backend's container port is published on.
    pub port: u16,
}

/// What one pod should have: its links, each with its ready backends, and
/// its outbound policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodWiring {
    /// Links with their backends, in the service's order.
    pub links: Vec<(Link, Vec<Backend>)>,
    /// The outbound policy.
    pub egress: EgressPolicy,
}

impl PodWiring {
    /// Whether the pod needs no rule at all.
    pub fn is_empty(&self) -> bool {
        self.links.is_empty() && self.egress.is_open()
    }
}

/// The rules of every berth chain (without tags), by chain name.
pub type ChainRules = BTreeMap<&'static str, Vec<String>>;

/// The rules `wiring` asks for. Backends are spread with `statistic`'s
/// random mode: rule i of n matches with probability 1/(n-i), so each of
/// the n backends gets an equal share of new connections.
pub fn desired_rules(wiring: &PodWiring) -> ChainRules {
    let mut chains = ChainRules::new();
    let mut nat = Vec::new();
    for (link, backends) in &wiring.links {
        let mut backends = backends.clone();
        backends.sort();
        backends.dedup();
        let n = backends.len();
        for (i, backend) in backends.iter().enumerate() {
            let mut rule = format!(
                "-d {}/32 -p tcp -m tcp --dport {}",
                link.local_address(),
                link.local_port()
            );
            if i + 1 < n {
                let probability = 1.0 / (n - i) as f64;
                let _ = write!(
                    rule,
                    " -m statistic --mode random --probability {probability:.10}"
                );
            }
            let _ = write!(
                rule,
                " -j DNAT --to-destination {}:{}",
                backend.address, backend.port
            );
            nat.push(rule);
        }
    }
    chains.insert(NAT_LINKS, nat);
    // Linked connections start from 127.0.0.1; off the loopback interface
    // they must carry the pod's address, or replies could not return.
    chains.insert(
        NAT_SNAT,
        vec!["-s 127.0.0.0/8 ! -o lo -m conntrack --ctstate DNAT -j MASQUERADE".into()],
    );
    // route_localnet lets 127/8 cross interfaces: refuse new connections
    // to the pod's loopback from outside (CVE-2020-8558); replies to
    // linked connections are ESTABLISHED and pass.
    chains.insert(
        FILTER_INPUT,
        vec!["-d 127.0.0.0/8 ! -i lo -m conntrack ! --ctstate RELATED,ESTABLISHED -j DROP".into()],
    );
    let mut egress = Vec::new();
    if wiring.egress == EgressPolicy::LinksOnly {
        egress.push("-o lo -j RETURN".to_owned());
        egress.push("-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN".to_owned());
        for (link, _) in &wiring.links {
            egress.push(format!(
                "-p tcp -m conntrack --ctstate DNAT --ctorigdst {} --ctorigdstport {} -j RETURN",
                link.local_address(),
                link.local_port()
            ));
        }
        egress.push("-j REJECT --reject-with icmp-port-unreachable".to_owned());
    }
    chains.insert(FILTER_EGRESS, egress);
    chains
}

/// The tag that names a rule: a hash of its chain and text.
fn tag(chain: &str, rule: &str) -> String {
    let mut hasher = sha2::Sha256::new();
    hasher.update(chain.as_bytes());
    hasher.update(b"\n");
    hasher.update(rule.as_bytes());
    let hex: String = hasher.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("berth:{hex}")
}

/// `-A <chain> <rule>` with the rule's tag.
fn tagged(chain: &str, rule: &str) -> String {
    format!("-m comment --comment {} {rule}", tag(chain, rule))
}

/// The tag in a rule as iptables-save prints it, if it has one.
fn tag_of(saved_rule: &str) -> Option<&str> {
    saved_rule
        .split_whitespace()
        .map(|w| w.trim_matches('"'))
        .find(|w| w.starts_with("berth:"))
}

/// What `iptables-save -t <table>` shows of berth's chains.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// The rules of each berth chain that exists, as iptables-save spells
    /// them (without `-A CHAIN`).
    pub chains: BTreeMap<String, Vec<String>>,
    /// Built-in chains that jump to a berth chain: (built-in, berth chain),
    /// once per jump rule.
    pub jumps: Vec<(String, String)>,
}

/// Reads the berth chains and jumps out of iptables-save output (of one or
/// several tables).
pub fn observe(save: &str) -> Observed {
    let mut observed = Observed::default();
    let ours = |chain: &str| CHAINS.iter().any(|(_, _, c)| *c == chain);
    for line in save.lines() {
        if let Some(declared) = line.strip_prefix(':') {
            let name = declared.split_whitespace().next().unwrap_or_default();
            if ours(name) {
                observed.chains.entry(name.to_owned()).or_default();
            }
        } else if let Some(rule) = line.strip_prefix("-A ") {
            let (chain, rest) = rule.split_once(' ').unwrap_or((rule, ""));
            if ours(chain) {
                observed
                    .chains
                    .entry(chain.to_owned())
                    .or_default()
                    .push(rest.to_owned());
            } else if let Some(target) = rest.strip_prefix("-j ") {
                if ours(target.trim()) {
                    observed
                        .jumps
                        .push((chain.to_owned(), target.trim().to_owned()));
                }
            }
        }
    }
    observed
}

/// Whether the observed chain holds exactly `rules`: the same tags, and
/// nothing else.
fn chain_matches(observed: &Observed, chain: &str, rules: &[String]) -> bool {
    observed.chains.get(chain).is_some_and(|seen| {
        let mut seen: Vec<Option<&str>> = seen.iter().map(|r| tag_of(r)).collect();
        let mut want: Vec<Option<String>> = rules.iter().map(|r| Some(tag(chain, r))).collect();
        seen.sort();
        want.sort();
        seen.len() == want.len() && seen.iter().zip(&want).all(|(s, w)| *s == w.as_deref())
    })
}

/// The `iptables-restore --noflush` script that brings the namespace from
/// `observed` to `desired` (`None`: remove every berth chain), or `None`
/// when it is already there. Each table is one transaction: a chain and its
/// jump appear, change or go together.
pub fn restore_script(desired: Option<&ChainRules>, observed: &Observed) -> Option<String> {
    let mut script = String::new();
    for table in ["nat", "filter"] {
        let chains: Vec<_> = CHAINS.iter().filter(|(t, _, _)| *t == table).collect();
        let mut body = String::new();
        let mut declared = String::new();
        let mut changed = false;
        for (_, builtin, chain) in &chains {
            let jumps = observed
                .jumps
                .iter()
                .filter(|(b, c)| b == builtin && c == chain)
                .count();
            match desired.and_then(|d| d.get(chain)) {
                Some(rules) => {
                    // Ours first in the built-in chain, exactly once.
                    if jumps != 1 {
                        changed = true;
                        for _ in 0..jumps {
                            let _ = writeln!(body, "-D {builtin} -j {chain}");
                        }
                        let _ = writeln!(body, "-I {builtin} 1 -j {chain}");
                    }
                    if !chain_matches(observed, chain, rules) {
                        changed = true;
                        // Declaring an existing chain under --noflush
                        // empties it; then it is filled anew.
                        let _ = writeln!(declared, ":{chain} - [0:0]");
                        for rule in rules {
                            let _ = writeln!(body, "-A {chain} {}", tagged(chain, rule));
                        }
                    }
                }
                None => {
                    for _ in 0..jumps {
                        changed = true;
                        let _ = writeln!(body, "-D {builtin} -j {chain}");
                    }
                    if observed.chains.contains_key(*chain) {
                        changed = true;
                        let _ = writeln!(declared, ":{chain} - [0:0]");
                        let _ = writeln!(body, "-X {chain}");
                    }
                }
            }
        }
        if changed {
            let _ = write!(script, "*{table}\n{declared}{body}COMMIT\n");
        }
    }
    (!script.is_empty()).then_some(script)
}

/// When `new` differs from `old` (what the namespace was last converged
/// to) only by links appended at the end, the script that appends their
/// rules without reading anything back: adding a link then costs the same
/// however many are installed. `None` when anything else changed (then a
/// full [`restore_script`] is needed).
pub fn append_script(old: &PodWiring, new: &PodWiring) -> Option<String> {
    let kept = old.links.len();
    if old.links.is_empty()
        || new.links.len() <= kept
        || new.links[..kept] != old.links[..]
        || new.egress != old.egress
    {
        return None;
    }
    let added = PodWiring {
        links: new.links[kept..].to_vec(),
        egress: new.egress,
    };
    let rules = desired_rules(&added);
    let mut script = String::from("*nat\n");
    for rule in &rules[NAT_LINKS] {
        let _ = writeln!(script, "-A {NAT_LINKS} {}", tagged(NAT_LINKS, rule));
    }
    script.push_str("COMMIT\n");
    if new.egress == EgressPolicy::LinksOnly {
        // Each link's RETURN goes before the final REJECT.
        script.push_str("*filter\n");
        for rule in rules[FILTER_EGRESS]
            .iter()
            .filter(|r| r.contains("--ctorigdstport"))
        {
            let _ = writeln!(
                script,
                "-I {FILTER_EGRESS} 1 {}",
                tagged(FILTER_EGRESS, rule)
            );
        }
        script.push_str("COMMIT\n");
    }
    Some(script)
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

    #[test]
    fn backends_share_new_connections_evenly() {
        let wiring = PodWiring {
            links: vec![(
                link("db", 3306, None),
                vec![backend(13, 30002), backend(12, 30001), backend(14, 30003)],
            )],
            egress: EgressPolicy::Open,
        };
        let rules = desired_rules(&wiring);
        assert_eq!(
            rules[NAT_LINKS],
            vec![
                "-d 127.0.0.1/32 -p tcp -m tcp --dport 3306 -m statistic --mode random --probability 0.3333333333 -j DNAT --to-destination 10.231.0.12:30001",
                "-d 127.0.0.1/32 -p tcp -m tcp --dport 3306 -m statistic --mode random --probability 0.5000000000 -j DNAT --to-destination 10.231.0.13:30002",
                "-d 127.0.0.1/32 -p tcp -m tcp --dport 3306 -j DNAT --to-destination 10.231.0.14:30003",
            ]
        );
        assert!(rules[FILTER_EGRESS].is_empty());
    }

    #[test]
    fn links_only_allows_loopback_replies_and_each_link() {
        let wiring = PodWiring {
            links: vec![(link("db", 3306, Some(13306)), vec![backend(12, 30001)])],
            egress: EgressPolicy::LinksOnly,
        };
        let egress = &desired_rules(&wiring)[FILTER_EGRESS];
        assert!(egress[2].contains("--ctorigdstport 13306 -j RETURN"));
        assert_eq!(
            egress.last().map(String::as_str),
            Some("-j REJECT --reject-with icmp-port-unreachable")
        );
    }

    /// What iptables-save prints after `script` ran on an empty namespace
    /// (close enough: the tags are what is compared).
    fn saved_after(script: &str) -> String {
        script
            .lines()
            .filter(|l| !l.starts_with("-X") && !l.starts_with("-D"))
            .map(|l| match l.strip_prefix("-I ") {
                Some(rest) => {
                    let (chain, jump) = rest.split_once(" 1 ").unwrap_or_default();
                    format!("-A {chain} {jump}")
                }
                None => l.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn an_applied_plan_is_stable_and_a_flushed_chain_comes_back() {
        let wiring = PodWiring {
            links: vec![(link("db", 3306, None), vec![backend(12, 30001)])],
            egress: EgressPolicy::Open,
        };
        let desired = desired_rules(&wiring);
        let first = restore_script(Some(&desired), &Observed::default()).expect("a script");
        assert!(first.starts_with("*nat\n:BERTH-LINKS - [0:0]\n"));
        assert!(first.contains("-I OUTPUT 1 -j BERTH-LINKS\n"));
        let saved = saved_after(&first);
        assert_eq!(restore_script(Some(&desired), &observe(&saved)), None);

        // Someone flushed BERTH-LINKS: only the nat table is written again,
        // and the jump (still there) is not doubled.
        let flushed: String = saved
            .lines()
            .filter(|l| !l.starts_with("-A BERTH-LINKS "))
            .map(|l| format!("{l}\n"))
            .collect();
        let again = restore_script(Some(&desired), &observe(&flushed)).expect("a repair");
        assert!(!again.contains("*filter"));
        assert!(!again.contains("-I OUTPUT"));
        assert!(again.contains("--to-destination 10.231.0.12:30001"));
    }

    #[test]
    fn a_new_backend_changes_the_chain_and_removal_leaves_nothing() {
        let one = PodWiring {
            links: vec![(link("db", 3306, None), vec![backend(12, 30001)])],
            egress: EgressPolicy::Open,
        };
        let saved = saved_after(
            &restore_script(Some(&desired_rules(&one)), &Observed::default()).expect("script"),
        );
        let moved = PodWiring {
            links: vec![(link("db", 3306, None), vec![backend(13, 30005)])],
            ..one
        };
        let rewire =
            restore_script(Some(&desired_rules(&moved)), &observe(&saved)).expect("rewire");
        assert!(rewire.contains("10.231.0.13:30005") && !rewire.contains("10.231.0.12"));

        let removal = restore_script(None, &observe(&saved)).expect("removal");
        for (_, builtin, chain) in CHAINS {
            assert!(removal.contains(&format!("-D {builtin} -j {chain}\n")));
            assert!(removal.contains(&format!("-X {chain}\n")));
        }
        assert_eq!(restore_script(None, &Observed::default()), None);
    }

    #[test]
    fn appending_a_link_gives_what_a_full_write_would() {
        let one = PodWiring {
            links: vec![(link("db", 3306, None), vec![backend(12, 30001)])],
            egress: EgressPolicy::LinksOnly,
        };
        let mut two = one.clone();
        two.links.push((
            link("cache", 6379, None),
            vec![backend(13, 30002), backend(14, 30003)],
        ));
        let full =
            restore_script(Some(&desired_rules(&one)), &Observed::default()).expect("script");
        let append = append_script(&one, &two).expect("an append");
        assert!(
            !append.contains(":BERTH"),
            "an append must not flush: {append}"
        );
        let saved = format!("{}\n{}", saved_after(&full), saved_after(&append));
        assert_eq!(
            restore_script(Some(&desired_rules(&two)), &observe(&saved)),
            None
        );

        // Anything but an append is a full write.
        let mut moved = two.clone();
        moved.links[0].1 = vec![backend(15, 30009)];
        assert_eq!(append_script(&two, &moved), None);
        assert_eq!(append_script(&two, &one), None);
        assert_eq!(append_script(&PodWiring::default(), &one), None);
    }

    #[test]
    fn a_link_on_a_stable_address_matches_that_address() {
        let mut stable = link("db", 3306, None);
        stable.address = Some(Ipv4Addr::new(169, 254, 10, 1));
        let wiring = PodWiring {
            links: vec![(stable, vec![backend(12, 30001)])],
            egress: EgressPolicy::LinksOnly,
        };
        let rules = desired_rules(&wiring);
        assert!(rules[NAT_LINKS][0].starts_with("-d 169.254.10.1/32 -p tcp -m tcp --dport 3306 "));
        assert!(rules[FILTER_EGRESS][2].contains("--ctorigdst 169.254.10.1 --ctorigdstport 3306"));
    }
}
