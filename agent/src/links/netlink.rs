//! The nf_tables netlink socket: sends a batch built by [`super::nft`] in
//! one `sendmsg` and waits for the kernel's answer to each message, and
//! reads berth's table back with dumps. A socket belongs to the network
//! namespace of the thread that opens it, so it is opened on the thread
//! [`super::netns`] moved into the pod's namespace. No process is spawned.

use std::collections::BTreeMap;
use std::time::Duration;

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};
use nix::sys::socket::{setsockopt, sockopt};
use nix::sys::time::TimeVal;

use super::nft::{self, Dump, Reply};

/// Why talking to nf_tables failed.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// The socket could not be opened, set up or used.
    #[error("nf_tables netlink socket: {0}")]
    Socket(#[source] std::io::Error),
    /// The kernel refused a message of a batch (and so the whole batch).
    #[error("nf_tables refused {what}: {source}")]
    Refused {
        /// What the message did.
        what: String,
        /// The kernel's errno.
        source: std::io::Error,
    },
    /// A dump failed.
    #[error("dumping the {what:?} of table {table}: {source}")]
    Dump {
        /// What.
        what: Dump,
        /// The table.
        table: String,
        /// The kernel's errno.
        source: std::io::Error,
    },
}

/// A batch may be large (a full write of 20,000 links is about 1.5 MB):
/// the send buffer must hold it whole.
const SEND_BUFFER: usize = 8 << 20;
const RECEIVE_BUFFER: usize = 4 << 20;
/// An answer that never comes fails the call instead of hanging the
/// namespace thread.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// An nf_tables socket in the calling thread's network namespace.
#[derive(Debug)]
pub struct Nftables {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Nftables {
    /// Opens one.
    pub fn open() -> Result<Self, NetlinkError> {
        let mut socket = Socket::new(NETLINK_NETFILTER).map_err(NetlinkError::Socket)?;
        socket.bind_auto().map_err(NetlinkError::Socket)?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(NetlinkError::Socket)?;
        let io = |e: nix::Error| NetlinkError::Socket(e.into());
        setsockopt(&socket, sockopt::SndBufForce, &SEND_BUFFER).map_err(io)?;
        setsockopt(&socket, sockopt::RcvBufForce, &RECEIVE_BUFFER).map_err(io)?;
        let timeout = TimeVal::new(ANSWER_TIMEOUT.as_secs() as _, 0);
        setsockopt(&socket, sockopt::ReceiveTimeout, &timeout).map_err(io)?;
        // Each open starts from a different sequence number, so an answer
        // meant for an earlier socket is never taken for one of ours.
        let seq = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.subsec_nanos());
        Ok(Self {
            socket,
            seq,
            buf: Vec::with_capacity(1 << 20),
        })
    }

    fn receive(&mut self) -> Result<Vec<Reply>, std::io::Error> {
        self.buf.clear();
        self.socket.recv(&mut self.buf, 0)?;
        Ok(nft::replies(&self.buf))
    }

    /// Applies `changes` to `table` in one transaction; returns once the
    /// kernel acknowledged every message, or with the first one it
    /// refused (then nothing was applied).
    pub fn apply(&mut self, table: &str, changes: &[nft::Change]) -> Result<(), NetlinkError> {
        if changes.is_empty() {
            return Ok(());
        }
        let batch = nft::batch(table, changes, self.seq);
        self.seq = self.seq.wrapping_add(batch.acked.len() as u32 + 2);
        self.socket
            .send(&batch.bytes, 0)
            .map_err(NetlinkError::Socket)?;
        let mut waiting: BTreeMap<u32, String> = batch.acked.into_iter().collect();
        while !waiting.is_empty() {
            for reply in self.receive().map_err(NetlinkError::Socket)? {
                if let Reply::Status { seq, errno } = reply {
                    let what = waiting.remove(&seq);
                    // An error for a message not acknowledged one by one
                    // (the batch's begin or end) fails the batch too.
                    if errno != 0 {
                        return Err(NetlinkError::Refused {
                            what: what.unwrap_or_else(|| "the batch".into()),
                            source: std::io::Error::from_raw_os_error(errno),
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// Every object of a dump of `what` in `table`, as attributes; a
    /// table or set that does not exist dumps as nothing.
    pub fn dump(
        &mut self,
        table: &str,
        what: &Dump,
    ) -> Result<Vec<BTreeMap<u16, Vec<u8>>>, NetlinkError> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let failed = |source| NetlinkError::Dump {
            what: what.clone(),
            table: table.to_owned(),
            source,
        };
        self.socket
            .send(&nft::dump_request(table, what, seq), 0)
            .map_err(failed)?;
        let mut objects = Vec::new();
        loop {
            for reply in self.receive().map_err(failed)? {
                match reply {
                    Reply::Object(attrs) => objects.push(attrs),
                    Reply::Done => return Ok(objects),
                    Reply::Status { errno: 0, .. } => {}
                    Reply::Status { errno, .. } if errno == nix::libc::ENOENT => {
                        return Ok(Vec::new());
                    }
                    Reply::Status { errno, .. } => {
                        return Err(failed(std::io::Error::from_raw_os_error(errno)))
                    }
                }
            }
        }
    }
}
