//! The nf_tables netlink vocabulary berth uses, pure: the expressions of
//! its rules, the messages of one transaction (a batch) that changes a
//! table, the dump requests that read one back, and the parsing of what
//! the kernel answers. The numbers are those of
//! `<linux/netfilter/nf_tables.h>` and `<linux/netfilter/nfnetlink.h>`;
//! the sockets are in [`super::netlink`]. No I/O here.
//!
//! nf_tables attributes carry integers in network byte order; netlink
//! headers are in the host's.

use std::collections::BTreeMap;

/// `NFNL_SUBSYS_NFTABLES`.
const SUBSYS: u16 = 10;
/// `NFPROTO_IPV4`: berth's table is an `ip` table.
pub const FAMILY_IP: u8 = 2;

/// Netlink message types.
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const BATCH_BEGIN: u16 = 16;
const BATCH_END: u16 = 17;

/// Netlink header flags.
const F_REQUEST: u16 = 0x1;
const F_ACK: u16 = 0x4;
const F_DUMP: u16 = 0x300;
const F_CREATE: u16 = 0x400;
const F_APPEND: u16 = 0x800;

const NLA_F_NESTED: u16 = 0x8000;

/// `nf_tables_msg_types`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
enum MsgType {
    NewTable = 0,
    GetTable = 1,
    DelTable = 2,
    NewChain = 3,
    GetChain = 4,
    DelChain = 5,
    NewRule = 6,
    GetRule = 7,
    DelRule = 8,
    NewSet = 9,
    GetSet = 10,
    DelSet = 11,
    NewSetElem = 12,
    GetSetElem = 13,
    DelSetElem = 14,
}

// Attribute numbers, per object.
const TABLE_NAME: u16 = 1;
const CHAIN_TABLE: u16 = 1;
const CHAIN_NAME: u16 = 3;
const CHAIN_HOOK: u16 = 4;
const CHAIN_POLICY: u16 = 5;
const CHAIN_TYPE: u16 = 7;
const HOOK_HOOKNUM: u16 = 1;
const HOOK_PRIORITY: u16 = 2;
const RULE_TABLE: u16 = 1;
const RULE_CHAIN: u16 = 2;
const RULE_EXPRESSIONS: u16 = 4;
const RULE_USERDATA: u16 = 7;
const SET_TABLE: u16 = 1;
const SET_NAME: u16 = 2;
const SET_FLAGS: u16 = 3;
const SET_KEY_TYPE: u16 = 4;
const SET_KEY_LEN: u16 = 5;
const SET_DATA_TYPE: u16 = 6;
const SET_DATA_LEN: u16 = 7;
const SET_ID: u16 = 10;
const ELEM_LIST_TABLE: u16 = 1;
const ELEM_LIST_SET: u16 = 2;
const ELEM_LIST_ELEMENTS: u16 = 3;
const ELEM_KEY: u16 = 1;
const ELEM_DATA: u16 = 2;
const LIST_ELEM: u16 = 1;
const DATA_VALUE: u16 = 1;
const DATA_VERDICT: u16 = 2;
const VERDICT_CODE: u16 = 1;
const EXPR_NAME: u16 = 1;
const EXPR_DATA: u16 = 2;

/// `NFT_SET_MAP`.
const SET_F_MAP: u32 = 0x8;

/// nftables' own type numbers for set keys and data (what `nft list`
/// prints a set's type from); a concatenation packs them 6 bits apart.
pub mod datatype {
    /// `mark`: a host-order 32-bit value (the numgen slot of a key).
    pub const MARK: u32 = 19;
    /// `ipv4_addr`.
    pub const IPV4_ADDR: u32 = 7;
    /// `inet_service`: a port.
    pub const INET_SERVICE: u32 = 13;

    /// The type of a concatenation of `parts`.
    pub fn concat(parts: &[u32]) -> u32 {
        parts.iter().fold(0, |all, part| (all << 6) | part)
    }
}

/// `nft_registers`: the 16-byte registers and the 32-bit views of them.
pub mod reg {
    /// The verdict register.
    pub const VERDICT: u32 = 0;
    /// The first 16-byte register (also the 32-bit `REG32_00`).
    pub const R1: u32 = 1;
    /// The second 32-bit word of [`R1`]: a concatenation's second part.
    pub const R32_01: u32 = 9;
    /// The third 32-bit word: a concatenation's third part.
    pub const R32_02: u32 = 10;
}

/// Netfilter hooks (`nf_inet_hooks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Hook {
    /// Packets to this namespace.
    Input = 1,
    /// Packets sent from this namespace.
    Output = 3,
    /// Packets leaving through an interface.
    Postrouting = 4,
}

/// Base chain types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ChainType {
    /// Sees the first packet of each connection; may rewrite addresses.
    Nat,
    /// Sees every packet; may drop it.
    Filter,
}

impl ChainType {
    fn name(self) -> &'static str {
        match self {
            Self::Nat => "nat",
            Self::Filter => "filter",
        }
    }
}

/// Where a base chain hangs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct BaseChain {
    /// Its type.
    pub kind: ChainType,
    /// Its hook.
    pub hook: Hook,
    /// Its priority (iptables' nat OUTPUT is -100, filter 0).
    pub priority: i32,
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `==`.
    Eq = 0,
    /// `!=`.
    Neq = 1,
}

/// A verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// `NF_DROP`.
    Drop = 0,
    /// `NF_ACCEPT`.
    Accept = 1,
}

/// Where a payload load reads from (`nft_payload_bases`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadBase {
    /// The IP header.
    Network = 1,
    /// The TCP header.
    Transport = 2,
}

/// Meta keys berth reads (`nft_meta_keys`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaKey {
    /// The input interface's name.
    IifName = 6,
    /// The output interface's name.
    OifName = 7,
    /// The layer 4 protocol.
    L4Proto = 16,
}

/// Conntrack keys berth reads (`nft_ct_keys`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtKey {
    /// `ct state` (bits: established 2, related 4).
    State = 0,
    /// `ct status` (bits: dnat 0x20).
    Status = 2,
    /// The original direction's destination port.
    ProtoDst = 12,
    /// The original direction's destination address.
    DstIp = 20,
}

/// One expression of a rule: the few berth's rules are made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// Loads a meta value into `dreg`.
    Meta {
        /// What.
        key: MetaKey,
        /// Into.
        dreg: u32,
    },
    /// Loads `len` bytes at `offset` of a header into `dreg`.
    Payload {
        /// Which header.
        base: PayloadBase,
        /// Byte offset in it.
        offset: u32,
        /// Bytes.
        len: u32,
        /// Into.
        dreg: u32,
    },
    /// Loads a conntrack value (of the original direction, for
    /// addresses and ports) into `dreg`.
    Ct {
        /// What.
        key: CtKey,
        /// Into.
        dreg: u32,
    },
    /// `reg = reg & mask` (xor 0), in place.
    And {
        /// The register.
        reg: u32,
        /// The mask; its length is the operand's.
        mask: Vec<u8>,
    },
    /// Compares `sreg` with `data`; the rule stops here unless it holds.
    Cmp {
        /// The register.
        sreg: u32,
        /// How.
        op: CmpOp,
        /// With what.
        data: Vec<u8>,
    },
    /// `numgen random mod modulus` into `dreg`: 0..modulus, uniform.
    NumgenRandom {
        /// Into.
        dreg: u32,
        /// How many values.
        modulus: u32,
    },
    /// Looks the key at `sreg` up in a set; with `dreg`, loads the mapped
    /// data there. The rule stops here when the key is not in the set.
    Lookup {
        /// The set's name.
        set: String,
        /// The key.
        sreg: u32,
        /// Where the data goes, for a map.
        dreg: Option<u32>,
    },
    /// Destination NAT to the IPv4 address at `addr` and the port at
    /// `port`.
    Dnat {
        /// The address register.
        addr: u32,
        /// The port register.
        port: u32,
    },
    /// Source NAT to the outgoing interface's address.
    Masquerade,
    /// The rule's verdict.
    Verdict(Verdict),
    /// Refuses with ICMP port unreachable.
    RejectPortUnreachable,
}

/// The 16-byte value an interface-name comparison takes.
pub fn ifname(name: &str) -> Vec<u8> {
    let mut value = name.as_bytes().to_vec();
    value.resize(16, 0);
    value
}

/// Builds netlink attributes into a message.
#[derive(Debug, Default)]
struct Attrs {
    buf: Vec<u8>,
}

impl Attrs {
    fn put(&mut self, kind: u16, data: &[u8]) {
        let len = u16::try_from(4 + data.len()).expect("a netlink attribute under 64 KiB");
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    fn u32(&mut self, kind: u16, value: u32) {
        self.put(kind, &value.to_be_bytes());
    }

    fn str(&mut self, kind: u16, value: &str) {
        let mut data = value.as_bytes().to_vec();
        data.push(0);
        self.put(kind, &data);
    }

    fn nest(&mut self, kind: u16, build: impl FnOnce(&mut Attrs)) {
        let mut inner = Attrs::default();
        build(&mut inner);
        self.put(kind | NLA_F_NESTED, &inner.buf);
    }

    fn value(&mut self, kind: u16, value: &[u8]) {
        self.nest(kind, |a| a.put(DATA_VALUE, value));
    }
}

impl Expr {
    fn encode(&self, a: &mut Attrs) {
        let (name, data): (&str, Attrs) = match self {
            Self::Meta { key, dreg } => ("meta", {
                let mut d = Attrs::default();
                d.u32(1, *dreg);
                d.u32(2, *key as u32);
                d
            }),
            Self::Payload {
                base,
                offset,
                len,
                dreg,
            } => ("payload", {
                let mut d = Attrs::default();
                d.u32(1, *dreg);
                d.u32(2, *base as u32);
                d.u32(3, *offset);
                d.u32(4, *len);
                d
            }),
            Self::Ct { key, dreg } => ("ct", {
                let mut d = Attrs::default();
                d.u32(1, *dreg);
                d.u32(2, *key as u32);
                if matches!(key, CtKey::DstIp | CtKey::ProtoDst) {
                    // IP_CT_DIR_ORIGINAL
                    d.put(3, &[0]);
                }
                d
            }),
            Self::And { reg, mask } => ("bitwise", {
                let mut d = Attrs::default();
                d.u32(1, *reg);
                d.u32(2, *reg);
                d.u32(3, mask.len() as u32);
                d.value(4, mask);
                d.value(5, &vec![0; mask.len()]);
                d
            }),
            Self::Cmp { sreg, op, data } => ("cmp", {
                let mut d = Attrs::default();
                d.u32(1, *sreg);
                d.u32(2, *op as u32);
                d.value(3, data);
                d
            }),
            Self::NumgenRandom { dreg, modulus } => ("numgen", {
                let mut d = Attrs::default();
                d.u32(1, *dreg);
                d.u32(2, *modulus);
                // NFT_NG_RANDOM
                d.u32(3, 1);
                d
            }),
            Self::Lookup { set, sreg, dreg } => ("lookup", {
                let mut d = Attrs::default();
                d.str(1, set);
                d.u32(2, *sreg);
                if let Some(dreg) = dreg {
                    d.u32(3, *dreg);
                }
                d
            }),
            Self::Dnat { addr, port } => ("nat", {
                let mut d = Attrs::default();
                // NFT_NAT_DNAT, NFPROTO_IPV4
                d.u32(1, 1);
                d.u32(2, u32::from(FAMILY_IP));
                d.u32(3, *addr);
                d.u32(5, *port);
                d
            }),
            Self::Masquerade => ("masq", Attrs::default()),
            Self::Verdict(verdict) => ("immediate", {
                let mut d = Attrs::default();
                d.u32(1, reg::VERDICT);
                d.nest(2, |data| {
                    data.nest(DATA_VERDICT, |v| v.u32(VERDICT_CODE, *verdict as u32));
                });
                d
            }),
            Self::RejectPortUnreachable => ("reject", {
                let mut d = Attrs::default();
                // NFT_REJECT_ICMP_UNREACH, ICMP_PORT_UNREACH
                d.u32(1, 0);
                d.put(2, &[3]);
                d
            }),
        };
        a.nest(LIST_ELEM, |e| {
            e.str(EXPR_NAME, name);
            if !data.buf.is_empty() {
                e.nest(EXPR_DATA, |d| d.buf.extend_from_slice(&data.buf));
            }
        });
    }
}

/// A set or map as it is created (its elements come separately).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetSpec {
    /// The key's nftables type ([`datatype`]).
    pub key_type: u32,
    /// The key's length in bytes (each part of a concatenation padded
    /// to 4).
    pub key_len: u32,
    /// For a map: the data's type and length.
    pub data: Option<(u32, u32)>,
}

/// One change to berth's table. A batch applies them in the order given;
/// [`super::plan::changes`] puts them in an order the kernel accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Creates the table.
    AddTable,
    /// Deletes the table and all it holds.
    DelTable,
    /// Creates a set or map.
    AddSet(String, SetSpec),
    /// Deletes a set no rule uses any more.
    DelSet(String),
    /// Adds elements (key, data; data empty in a plain set).
    AddElements(String, Vec<(Vec<u8>, Vec<u8>)>),
    /// Deletes elements by key.
    DelElements(String, Vec<Vec<u8>>),
    /// Creates a base chain.
    AddChain(String, BaseChain),
    /// Deletes an empty chain.
    DelChain(String),
    /// Removes every rule of a chain.
    FlushChain(String),
    /// Appends a rule (its expressions and its tag, which `nft list`
    /// shows as the rule's comment) to a chain.
    AddRule {
        /// The chain.
        chain: String,
        /// What the rule does.
        exprs: Vec<Expr>,
        /// The rule's user data.
        userdata: Vec<u8>,
    },
}

/// Elements per message: a message stays well under netlink's 64 KiB
/// attribute limit.
const ELEMENTS_PER_MESSAGE: usize = 512;

/// One netlink message of a batch, and what it does (for errors).
#[derive(Debug)]
struct Message {
    bytes: Vec<u8>,
}

fn message(kind: u16, flags: u16, seq: u32, family: u8, res_id: u16, attrs: &Attrs) -> Message {
    let len = 16 + 4 + attrs.buf.len();
    let mut bytes = Vec::with_capacity(len);
    bytes.extend_from_slice(&(len as u32).to_ne_bytes());
    bytes.extend_from_slice(&kind.to_ne_bytes());
    bytes.extend_from_slice(&flags.to_ne_bytes());
    bytes.extend_from_slice(&seq.to_ne_bytes());
    bytes.extend_from_slice(&0u32.to_ne_bytes());
    bytes.push(family);
    bytes.push(0);
    bytes.extend_from_slice(&res_id.to_be_bytes());
    bytes.extend_from_slice(&attrs.buf);
    Message { bytes }
}

fn nft_type(kind: MsgType) -> u16 {
    (SUBSYS << 8) | kind as u16
}

/// A transaction: the bytes to send in one `sendmsg`, and for each
/// message that asks for an acknowledgement, its sequence number and
/// what it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// BATCH_BEGIN, the messages, BATCH_END.
    pub bytes: Vec<u8>,
    /// (sequence number, description) of each message acknowledged.
    pub acked: Vec<(u32, String)>,
}

/// The batch that applies `changes` to table `table`, atomically: the
/// kernel commits all of it or none. Sequence numbers start at `seq`.
pub fn batch(table: &str, changes: &[Change], seq: u32) -> Batch {
    let mut out = Batch {
        bytes: Vec::new(),
        acked: Vec::new(),
    };
    let mut seq = seq;
    let mut next = || {
        seq = seq.wrapping_add(1);
        seq
    };
    let none = Attrs::default();
    out.bytes
        .extend(message(BATCH_BEGIN, F_REQUEST, next(), 0, SUBSYS, &none).bytes);
    let mut push = |kind: MsgType, flags: u16, attrs: Attrs, what: String| {
        let seq = next();
        out.bytes.extend(
            message(
                nft_type(kind),
                F_REQUEST | F_ACK | flags,
                seq,
                FAMILY_IP,
                0,
                &attrs,
            )
            .bytes,
        );
        out.acked.push((seq, what));
    };
    let mut set_id = 0u32;
    for change in changes {
        match change {
            Change::AddTable => {
                let mut a = Attrs::default();
                a.str(TABLE_NAME, table);
                push(
                    MsgType::NewTable,
                    F_CREATE,
                    a,
                    format!("adding table {table}"),
                );
            }
            Change::DelTable => {
                let mut a = Attrs::default();
                a.str(TABLE_NAME, table);
                push(MsgType::DelTable, 0, a, format!("deleting table {table}"));
            }
            Change::AddSet(name, spec) => {
                set_id += 1;
                let mut a = Attrs::default();
                a.str(SET_TABLE, table);
                a.str(SET_NAME, name);
                a.u32(SET_FLAGS, if spec.data.is_some() { SET_F_MAP } else { 0 });
                a.u32(SET_KEY_TYPE, spec.key_type);
                a.u32(SET_KEY_LEN, spec.key_len);
                if let Some((kind, len)) = spec.data {
                    a.u32(SET_DATA_TYPE, kind);
                    a.u32(SET_DATA_LEN, len);
                }
                a.u32(SET_ID, set_id);
                push(MsgType::NewSet, F_CREATE, a, format!("adding set {name}"));
            }
            Change::DelSet(name) => {
                let mut a = Attrs::default();
                a.str(SET_TABLE, table);
                a.str(SET_NAME, name);
                push(MsgType::DelSet, 0, a, format!("deleting set {name}"));
            }
            Change::AddElements(set, elements) => {
                for chunk in elements.chunks(ELEMENTS_PER_MESSAGE) {
                    let mut a = Attrs::default();
                    a.str(ELEM_LIST_TABLE, table);
                    a.str(ELEM_LIST_SET, set);
                    a.nest(ELEM_LIST_ELEMENTS, |list| {
                        for (key, data) in chunk {
                            list.nest(LIST_ELEM, |e| {
                                e.value(ELEM_KEY, key);
                                if !data.is_empty() {
                                    e.value(ELEM_DATA, data);
                                }
                            });
                        }
                    });
                    push(
                        MsgType::NewSetElem,
                        F_CREATE,
                        a,
                        format!("adding {} elements to {set}", chunk.len()),
                    );
                }
            }
            Change::DelElements(set, keys) => {
                for chunk in keys.chunks(ELEMENTS_PER_MESSAGE) {
                    let mut a = Attrs::default();
                    a.str(ELEM_LIST_TABLE, table);
                    a.str(ELEM_LIST_SET, set);
                    a.nest(ELEM_LIST_ELEMENTS, |list| {
                        for key in chunk {
                            list.nest(LIST_ELEM, |e| e.value(ELEM_KEY, key));
                        }
                    });
                    push(
                        MsgType::DelSetElem,
                        0,
                        a,
                        format!("deleting {} elements from {set}", chunk.len()),
                    );
                }
            }
            Change::AddChain(name, base) => {
                let mut a = Attrs::default();
                a.str(CHAIN_TABLE, table);
                a.str(CHAIN_NAME, name);
                a.nest(CHAIN_HOOK, |h| {
                    h.u32(HOOK_HOOKNUM, base.hook as u32);
                    h.put(HOOK_PRIORITY, &base.priority.to_be_bytes());
                });
                a.u32(CHAIN_POLICY, Verdict::Accept as u32);
                a.str(CHAIN_TYPE, base.kind.name());
                push(
                    MsgType::NewChain,
                    F_CREATE,
                    a,
                    format!("adding chain {name}"),
                );
            }
            Change::DelChain(name) => {
                let mut a = Attrs::default();
                a.str(CHAIN_TABLE, table);
                a.str(CHAIN_NAME, name);
                push(MsgType::DelChain, 0, a, format!("deleting chain {name}"));
            }
            Change::FlushChain(name) => {
                let mut a = Attrs::default();
                a.str(RULE_TABLE, table);
                a.str(RULE_CHAIN, name);
                push(MsgType::DelRule, 0, a, format!("flushing chain {name}"));
            }
            Change::AddRule {
                chain,
                exprs,
                userdata,
            } => {
                let mut a = Attrs::default();
                a.str(RULE_TABLE, table);
                a.str(RULE_CHAIN, chain);
                a.nest(RULE_EXPRESSIONS, |list| {
                    for expr in exprs {
                        expr.encode(list);
                    }
                });
                a.put(RULE_USERDATA, userdata);
                push(
                    MsgType::NewRule,
                    F_CREATE | F_APPEND,
                    a,
                    format!("adding a rule to chain {chain}"),
                );
            }
        }
    }
    out.bytes
        .extend(message(BATCH_END, F_REQUEST, next(), 0, SUBSYS, &none).bytes);
    out
}

/// What can be dumped of berth's table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dump {
    /// Every `ip` table.
    Tables,
    /// Every `ip` chain.
    Chains,
    /// The rules of the table.
    Rules,
    /// The sets of the table.
    Sets,
    /// The elements of one set of the table.
    Elements(String),
}

/// The request that dumps `what` of table `table`.
pub fn dump_request(table: &str, what: &Dump, seq: u32) -> Vec<u8> {
    let mut a = Attrs::default();
    let kind = match what {
        Dump::Tables => MsgType::GetTable,
        Dump::Chains => MsgType::GetChain,
        Dump::Rules => {
            a.str(RULE_TABLE, table);
            MsgType::GetRule
        }
        Dump::Sets => {
            a.str(SET_TABLE, table);
            MsgType::GetSet
        }
        Dump::Elements(set) => {
            a.str(ELEM_LIST_TABLE, table);
            a.str(ELEM_LIST_SET, set);
            MsgType::GetSetElem
        }
    };
    message(nft_type(kind), F_REQUEST | F_DUMP, seq, FAMILY_IP, 0, &a).bytes
}

/// One netlink message the kernel sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// An acknowledgement (`errno` 0) or an error, for message `seq`.
    Status {
        /// The message it answers.
        seq: u32,
        /// 0, or a positive errno.
        errno: i32,
    },
    /// The end of a dump.
    Done,
    /// An object: its attributes by number (nested ones as raw bytes).
    Object(BTreeMap<u16, Vec<u8>>),
}

/// The attributes of `bytes`, by number (the nested flag cleared).
pub fn attributes(bytes: &[u8]) -> BTreeMap<u16, Vec<u8>> {
    let mut attrs = BTreeMap::new();
    let mut rest = bytes;
    while rest.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([rest[0], rest[1]]));
        let kind = u16::from_ne_bytes([rest[2], rest[3]]) & !NLA_F_NESTED;
        if len < 4 || len > rest.len() {
            break;
        }
        attrs.insert(kind, rest[4..len].to_vec());
        let padded = (len + 3) & !3;
        rest = &rest[padded.min(rest.len())..];
    }
    attrs
}

/// Every attribute of kind `kind` in `bytes`, in order (a list).
fn all_of(bytes: &[u8], kind: u16) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while rest.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([rest[0], rest[1]]));
        let k = u16::from_ne_bytes([rest[2], rest[3]]) & !NLA_F_NESTED;
        if len < 4 || len > rest.len() {
            break;
        }
        if k == kind {
            out.push(rest[4..len].to_vec());
        }
        let padded = (len + 3) & !3;
        rest = &rest[padded.min(rest.len())..];
    }
    out
}

/// The netlink messages in one datagram the kernel sent.
pub fn replies(datagram: &[u8]) -> Vec<Reply> {
    let mut out = Vec::new();
    let mut rest = datagram;
    while rest.len() >= 16 {
        let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if len < 16 || len > rest.len() {
            break;
        }
        let kind = u16::from_ne_bytes([rest[4], rest[5]]);
        let body = &rest[16..len];
        match kind {
            NLMSG_ERROR if body.len() >= 16 => {
                let errno = i32::from_ne_bytes([body[0], body[1], body[2], body[3]]);
                // The header of the message it answers follows.
                let seq = u32::from_ne_bytes([body[12], body[13], body[14], body[15]]);
                out.push(Reply::Status { seq, errno: -errno });
            }
            NLMSG_DONE => out.push(Reply::Done),
            _ if body.len() >= 4 => out.push(Reply::Object(attributes(&body[4..]))),
            _ => {}
        }
        rest = &rest[((len + 3) & !3).min(rest.len())..];
    }
    out
}

/// A string attribute (without its NUL).
pub fn string(attrs: &BTreeMap<u16, Vec<u8>>, kind: u16) -> Option<String> {
    let raw = attrs.get(&kind)?;
    let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
    Some(String::from_utf8_lossy(&raw[..end]).into_owned())
}

/// The name of a dumped table, chain or set, and the table it is in
/// (tables: their own name).
pub fn object_name(what: &Dump, attrs: &BTreeMap<u16, Vec<u8>>) -> Option<(String, String)> {
    match what {
        Dump::Tables => {
            let name = string(attrs, TABLE_NAME)?;
            Some((name.clone(), name))
        }
        Dump::Chains => Some((string(attrs, CHAIN_TABLE)?, string(attrs, CHAIN_NAME)?)),
        Dump::Sets => Some((string(attrs, SET_TABLE)?, string(attrs, SET_NAME)?)),
        Dump::Rules | Dump::Elements(_) => None,
    }
}

/// A dumped rule: (table, chain, user data).
pub fn rule(attrs: &BTreeMap<u16, Vec<u8>>) -> Option<(String, String, Vec<u8>)> {
    Some((
        string(attrs, RULE_TABLE)?,
        string(attrs, RULE_CHAIN)?,
        attrs.get(&RULE_USERDATA).cloned().unwrap_or_default(),
    ))
}

/// The elements (key, data) of a dumped element list.
pub fn elements(attrs: &BTreeMap<u16, Vec<u8>>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let Some(list) = attrs.get(&ELEM_LIST_ELEMENTS) else {
        return Vec::new();
    };
    let value = |nested: Option<&Vec<u8>>| {
        nested
            .map(|n| attributes(n).remove(&DATA_VALUE).unwrap_or_default())
            .unwrap_or_default()
    };
    all_of(list, LIST_ELEM)
        .iter()
        .map(|elem| {
            let e = attributes(elem);
            (value(e.get(&ELEM_KEY)), value(e.get(&ELEM_DATA)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The nlmsghdr fields of each message in `bytes`: (type, flags, seq).
    fn headers(bytes: &[u8]) -> Vec<(u16, u16, u32)> {
        let mut out = Vec::new();
        let mut rest = bytes;
        while rest.len() >= 16 {
            let len = u32::from_ne_bytes(rest[0..4].try_into().unwrap()) as usize;
            out.push((
                u16::from_ne_bytes(rest[4..6].try_into().unwrap()),
                u16::from_ne_bytes(rest[6..8].try_into().unwrap()),
                u32::from_ne_bytes(rest[8..12].try_into().unwrap()),
            ));
            rest = &rest[len..];
        }
        out
    }

    #[test]
    fn a_batch_is_framed_and_every_change_is_acknowledged() {
        let b = batch(
            "berth",
            &[
                Change::AddTable,
                Change::AddElements("m".into(), vec![(vec![1; 12], vec![2; 8]); 600]),
            ],
            100,
        );
        let h = headers(&b.bytes);
        assert_eq!(h.first(), Some(&(BATCH_BEGIN, F_REQUEST, 101)));
        assert_eq!(h.last(), Some(&(BATCH_END, F_REQUEST, 105)));
        // 600 elements take two messages.
        assert_eq!(
            h[1..4].iter().map(|m| m.0).collect::<Vec<_>>(),
            vec![0xa00, 0xa0c, 0xa0c]
        );
        assert!(h[1..4]
            .iter()
            .all(|m| m.1 & (F_ACK | F_CREATE) == F_ACK | F_CREATE));
        assert_eq!(
            b.acked.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
            vec![102, 103, 104]
        );
        assert_eq!(b.acked[1].1, "adding 512 elements to m");
    }

    #[test]
    fn a_table_message_matches_what_nft_sends() {
        // `nft add table ip berth`, as `nft --debug=mnl` shows it.
        let b = batch("berth", &[Change::AddTable], 0);
        let table = &b.bytes[20..];
        let body = &table[16..];
        assert_eq!(&body[..4], &[2, 0, 0, 0]);
        assert_eq!(
            &body[4..16],
            &[10, 0, 1, 0, b'b', b'e', b'r', b't', b'h', 0, 0, 0]
        );
    }

    #[test]
    fn elements_and_rules_read_back_as_written() {
        let b = batch(
            "berth",
            &[
                Change::AddElements(
                    "m".into(),
                    vec![(vec![127, 0, 0, 1, 0x0c, 0xea, 0, 0], vec![10, 0, 0, 1])],
                ),
                Change::AddRule {
                    chain: "links".into(),
                    exprs: vec![Expr::Masquerade],
                    userdata: b"\x00\x03ab\x00".to_vec(),
                },
            ],
            0,
        );
        // Each message's attributes start after its two headers.
        let mut rest = &b.bytes[20..];
        let mut objects = Vec::new();
        for _ in 0..2 {
            let len = u32::from_ne_bytes(rest[0..4].try_into().unwrap()) as usize;
            objects.push(attributes(&rest[20..len]));
            rest = &rest[len..];
        }
        assert_eq!(
            elements(&objects[0]),
            vec![(vec![127, 0, 0, 1, 0x0c, 0xea, 0, 0], vec![10, 0, 0, 1])]
        );
        assert_eq!(
            rule(&objects[1]),
            Some(("berth".into(), "links".into(), b"\x00\x03ab\x00".to_vec()))
        );
    }

    #[test]
    fn an_error_names_the_message_it_answers() {
        let mut reply = Vec::new();
        reply.extend_from_slice(&36u32.to_ne_bytes());
        reply.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        reply.extend_from_slice(&[0; 10]);
        reply.extend_from_slice(&(-2i32).to_ne_bytes());
        reply.extend_from_slice(&[0; 8]);
        reply.extend_from_slice(&7u32.to_ne_bytes());
        reply.extend_from_slice(&[0; 4]);
        assert_eq!(replies(&reply), vec![Reply::Status { seq: 7, errno: 2 }]);
    }

    #[test]
    fn concatenated_types_pack_six_bits_apart() {
        // What nft sends for `type ipv4_addr . inet_service`.
        assert_eq!(
            datatype::concat(&[datatype::IPV4_ADDR, datatype::INET_SERVICE]),
            0x1cd
        );
    }
}
