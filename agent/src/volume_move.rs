//! Moves with data, the agent's part: the source node streams each of a
//! moving pod's named volumes to the target node's agent, agent to agent,
//! over TLS with both nodes' certificates from the cluster's CA; the master
//! only says who moves what (the [`MoveOrder`]s in this node's assignments)
//! and hears back (`POST /v1/nodes/{node}/moves/{pod}`).
//!
//! The wire, inside TLS: one JSON line `{"pod", "volumes"}` from the
//! source; then per volume its tar stream in frames (a big-endian `u32`
//! length, then that many bytes; a zero length ends the volume), and the
//! target's JSON line back with the bytes and SHA-256 it received. Both
//! ends hash the same stream; a difference is a failed attempt. Every
//! attempt starts over (the target empties the volume first), so an
//! attempt cut by a dead agent or network is simply made again.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use berth_client::NodeClient;
use berth_model::{MoveOrder, MoveReport, MoveRole, NodeCertificate};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::reconcile::desired::named_volume;
use crate::reconcile::execute::{class_volume_dir, remove_class_volume_dirs};
use crate::runtime::Runtime;

/// The port every agent receives volume transfers on.
pub const TRANSFER_PORT: u16 = 7445;

/// Bytes per frame of a volume's tar stream.
const FRAME: usize = 256 * 1024;

/// Pause between a failed attempt and the next.
const RETRY: Duration = Duration::from_secs(1);

/// How often the source reports progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// The first line of a transfer.
#[derive(Debug, Serialize, Deserialize)]
struct Header {
    pod: String,
    volumes: Vec<String>,
}

/// The target's answer after each volume.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Received {
    volume: String,
    bytes: u64,
    sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// This node's TLS configurations for transfers, from its certificate.
struct Tls {
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
}

fn tls(cert: &NodeCertificate) -> anyhow::Result<Tls> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(cert.ca_pem.as_bytes()).context("the CA")?)?;
    let roots = Arc::new(roots);
    let chain = vec![
        CertificateDer::from_pem_slice(cert.certificate_pem.as_bytes())
            .context("the node certificate")?,
    ];
    let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).context("the node key")?;
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::clone(&roots),
        Arc::clone(&provider),
    )
    .build()?;
    let server = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain.clone(), key.clone_key())?;
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)?;
    Ok(Tls {
        server: Arc::new(server),
        client: Arc::new(client),
    })
}

/// What the assignments say to the mover: this node's move orders, and
/// the pods it runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Orders {
    /// The moves this node is an end of.
    pub moves: Vec<MoveOrder>,
    /// The pods assigned to it.
    pub assigned: Vec<String>,
}

/// The partial copies this node received for moves given up since
/// `before` (its target orders then): the order of a copy never verified
/// is gone, and the pod is not this node's to run. Their volumes go.
fn abandoned(before: &[MoveOrder], now: &Orders) -> Vec<MoveOrder> {
    before
        .iter()
        .filter(|o| o.role == MoveRole::Target && o.phase.before_copy_verified())
        .filter(|o| !now.moves.iter().any(|m| m.pod == o.pod))
        .filter(|o| !now.assigned.contains(&o.pod))
        .cloned()
        .collect()
}

/// Removes a given-up move's partial copy, unless the pod is here after all.
async fn discard(runtime: &Runtime, order: &MoveOrder) {
    if runtime.holds(&order.pod).unwrap_or(true) {
        return;
    }
    for volume in &order.volumes {
        let name = named_volume(&order.pod, volume);
        let removed = runtime.docker().remove_volume(&name).await;
        let removed = removed.map_err(anyhow::Error::from).and_then(|()| {
            remove_class_volume_dirs(runtime.config(), &name).map_err(anyhow::Error::from)
        });
        match removed {
            Ok(()) => {
                info!(pod = %order.pod, volume = %volume, "removed the partial copy of a move given up")
            }
            Err(e) => {
                warn!(pod = %order.pod, error = %e, "cannot remove the partial copy of a move given up")
            }
        }
    }
}

/// Asks the master for this node's certificate until it answers.
async fn certificate(master: &NodeClient) -> Tls {
    let url = format!(
        "{}/v1/nodes/{}/certificate",
        master.masters().current(),
        master.node()
    );
    loop {
        let answer = async {
            let response = master
                .http()
                .post(&url)
                .bearer_auth(&master.joined().credential)
                .send()
                .await?
                .error_for_status()?;
            let cert: NodeCertificate = response.json().await?;
            tls(&cert)
        }
        .await;
        match answer {
            Ok(tls) => return tls,
            Err(e) => {
                warn!(error = %format!("{e:#}"), "cannot get this node's certificate for volume transfers; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
}

/// Carries out this node's move orders as they come, forever: receives
/// for moves it is the target of, sends (and later removes its copy) for
/// moves it is the source of.
pub async fn run(master: NodeClient, runtime: Arc<Runtime>, mut orders: watch::Receiver<Orders>) {
    // No certificate is asked for until a move needs one.
    let _ = orders.wait_for(|o: &Orders| !o.moves.is_empty()).await;
    let tls = certificate(&master).await;
    let expected: Arc<Mutex<Vec<MoveOrder>>> = Arc::default();
    let listener = {
        let (runtime, expected, server) = (
            Arc::clone(&runtime),
            Arc::clone(&expected),
            Arc::clone(&tls.server),
        );
        tokio::spawn(async move { listen(server, runtime, expected).await })
    };
    let mut tasks: BTreeMap<(String, berth_model::MovePhase), JoinHandle<()>> = BTreeMap::new();
    let mut arriving: Vec<MoveOrder> = Vec::new();
    loop {
        let now = orders.borrow_and_update().clone();
        for order in abandoned(&arriving, &now) {
            let runtime = Arc::clone(&runtime);
            tokio::spawn(async move { discard(&runtime, &order).await });
        }
        arriving = now
            .moves
            .iter()
            .filter(|o| o.role == MoveRole::Target)
            .cloned()
            .collect();
        if let Ok(mut expected) = expected.lock() {
            expected.clone_from(&arriving);
        }
        let mine: BTreeMap<(String, berth_model::MovePhase), MoveOrder> = now
            .moves
            .into_iter()
            .filter(|o| o.role == MoveRole::Source)
            .map(|o| ((o.pod.clone(), o.phase), o))
            .collect();
        // Stopping and Copying are one task: the phase turns Copying at
        // the first report, which must not start a second copy.
        let key = |pod: &str, phase: berth_model::MovePhase| {
            if phase.before_copy_verified() {
                (pod.to_owned(), berth_model::MovePhase::Stopping)
            } else {
                (pod.to_owned(), phase)
            }
        };
        let wanted: BTreeMap<_, _> = mine
            .into_values()
            .map(|o| (key(&o.pod, o.phase), o))
            .collect();
        // A task whose order is gone is cut short; a finished one whose
        // order stays is not started again.
        tasks.retain(|k, task| {
            let keep = wanted.contains_key(k);
            if !keep {
                task.abort();
            }
            keep
        });
        for (k, order) in wanted {
            if tasks.contains_key(&k) {
                continue;
            }
            let (master, runtime, client) = (
                master.clone(),
                Arc::clone(&runtime),
                Arc::clone(&tls.client),
            );
            let task = if order.phase.before_copy_verified() {
                tokio::spawn(async move { send(&master, &runtime, client, &order).await })
            } else {
                tokio::spawn(async move { clean(&master, &runtime, &order).await })
            };
            tasks.insert(k, task);
        }
        if orders.changed().await.is_err() {
            break;
        }
    }
    listener.abort();
    for task in tasks.into_values() {
        task.abort();
    }
}

/// Reports `report` on `pod`'s move, retrying until the master hears it.
async fn report(master: &NodeClient, pod: &str, report: &MoveReport) {
    let path = format!("/v1/nodes/{}/moves/{pod}", master.node());
    loop {
        match master.post(&path, report).await {
            Ok(()) => return,
            Err(e @ berth_client::Error::Answered { .. }) => {
                // The move has moved on (or is gone): nothing to retry.
                warn!(pod, error = %e, "the master refused a move report");
                return;
            }
            Err(e) => {
                warn!(pod, error = %berth_client::error::report(&e), "cannot report a move; retrying");
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

/// The source's copy: waits until the pod is stopped and gone here (its
/// volumes kept), then sends until an attempt is verified.
async fn send(
    master: &NodeClient,
    runtime: &Runtime,
    client: Arc<rustls::ClientConfig>,
    order: &MoveOrder,
) {
    while runtime.holds(&order.pod).unwrap_or(true) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut attempt = 0;
    loop {
        attempt += 1;
        info!(pod = %order.pod, to = %order.to, attempt, "sending the pod's volumes");
        match send_once(master, runtime, Arc::clone(&client), order, attempt).await {
            Ok(copied) => {
                info!(pod = %order.pod, to = %order.to, "volumes copied and verified");
                report(master, &order.pod, &copied).await;
                return;
            }
            Err(e) => {
                let error = format!("{e:#}");
                warn!(pod = %order.pod, to = %order.to, error = %error, "a volume transfer failed; trying again");
                report(master, &order.pod, &MoveReport::Failed { error }).await;
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 and length of a volume's tar stream, taken on the thread
/// that packs or unpacks it: hashing beside the tar work, not on the
/// runtime's thread beside TLS, uses both cores.
struct Tally {
    hash: ring::digest::Context,
    bytes: u64,
}

impl Tally {
    fn new() -> Self {
        Self {
            hash: ring::digest::Context::new(&ring::digest::SHA256),
            bytes: 0,
        }
    }

    fn add(&mut self, data: &[u8]) {
        self.hash.update(data);
        self.bytes += data.len() as u64;
    }

    /// The hex SHA-256 and the byte count.
    fn finish(self) -> (String, u64) {
        (hex(self.hash.finish().as_ref()), self.bytes)
    }
}

/// Writes a volume's tar stream into frames of [`FRAME`] bytes.
struct FrameWriter {
    tx: mpsc::Sender<Vec<u8>>,
    buf: Vec<u8>,
    tally: Tally,
}

impl Write for FrameWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= FRAME {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let frame = std::mem::replace(&mut self.buf, Vec::with_capacity(FRAME));
        self.tally.add(&frame);
        self.tx
            .blocking_send(frame)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "transfer ended"))
    }
}

/// Reads a volume's tar stream from frames.
struct FrameReader {
    rx: mpsc::Receiver<Vec<u8>>,
    current: Vec<u8>,
    at: usize,
    tally: Tally,
}

impl Read for FrameReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.at >= self.current.len() {
            match self.rx.blocking_recv() {
                Some(frame) => {
                    self.tally.add(&frame);
                    self.current = frame;
                    self.at = 0;
                }
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.current.len() - self.at);
        out[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

async fn write_line<W: AsyncWrite + Unpin>(
    w: &mut W,
    value: &impl Serialize,
) -> anyhow::Result<()> {
    let mut line = serde_json::to_vec(value)?;
    line.push(b'\n');
    w.write_all(&line).await?;
    w.flush().await?;
    Ok(())
}

async fn send_once(
    master: &NodeClient,
    runtime: &Runtime,
    client: Arc<rustls::ClientConfig>,
    order: &MoveOrder,
    attempt: u32,
) -> anyhow::Result<MoveReport> {
    let address = format!("{}:{TRANSFER_PORT}", order.to_address);
    let tcp = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(&address))
        .await
        .map_err(|_| anyhow!("connecting to {} at {address}: timed out", order.to))?
        .with_context(|| format!("connecting to {} at {address}", order.to))?;
    let _ = tcp.set_nodelay(true);
    let name = ServerName::try_from(order.to.clone())
        .map_err(|e| anyhow!("node name {}: {e}", order.to))?;
    let stream = tokio_rustls::TlsConnector::from(client)
        .connect(name, tcp)
        .await
        .with_context(|| format!("TLS with {} at {address}", order.to))?;
    let (reader, mut writer) = tokio::io::split(stream);
    let mut reader = BufReader::new(reader);
    write_line(
        &mut writer,
        &Header {
            pod: order.pod.clone(),
            volumes: order.volumes.clone(),
        },
    )
    .await?;
    let started = Instant::now();
    // Each volume's stream is hashed once; the report names them all.
    let mut checksums: Vec<(String, String)> = Vec::new();
    let mut sent: u64 = 0;
    let mut last_report = Instant::now();
    for volume in &order.volumes {
        let docker_name = named_volume(&order.pod, volume);
        let dir = runtime
            .docker()
            .volume_mountpoint(&docker_name)
            .await
            .with_context(|| format!("volume {volume}"))?
            .with_context(|| format!("volume {volume} is not on this node"))?;
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(8);
        let packing = tokio::task::spawn_blocking(move || pack(std::path::Path::new(&dir), tx));
        while let Some(frame) = rx.recv().await {
            writer
                .write_all(&(frame.len() as u32).to_be_bytes())
                .await?;
            writer.write_all(&frame).await?;
            sent += frame.len() as u64;
            if last_report.elapsed() >= PROGRESS_EVERY {
                last_report = Instant::now();
                let progress = MoveReport::Copying {
                    bytes_copied: sent,
                    rate_bytes_per_sec: rate(sent, started),
                    attempt,
                };
                let (master, pod) = (master.clone(), order.pod.clone());
                // Progress is news, not a step: it never holds up the data.
                tokio::spawn(async move {
                    let path = format!("/v1/nodes/{}/moves/{pod}", master.node());
                    let _ = master.post(&path, &progress).await;
                });
            }
        }
        let (ours, bytes) = packing
            .await?
            .map_err(|e| anyhow!("reading volume {volume}: {}", chain(&e)))?;
        writer.write_all(&0u32.to_be_bytes()).await?;
        writer.flush().await?;
        let mut line = String::new();
        reader.read_line(&mut line).await?;
        if line.is_empty() {
            bail!("{} closed the transfer of volume {volume}", order.to);
        }
        let received: Received = serde_json::from_str(&line)
            .with_context(|| format!("{}'s answer for volume {volume}", order.to))?;
        if let Some(error) = received.error {
            bail!("{} refused volume {volume}: {error}", order.to);
        }
        if received.sha256 != ours || received.bytes != bytes {
            bail!(
                "volume {volume}: {} received {} bytes with sha256 {}, {bytes} bytes with sha256 {ours} were sent",
                order.to,
                received.bytes,
                received.sha256
            );
        }
        checksums.push((volume.clone(), ours));
    }
    let _ = writer.shutdown().await;
    Ok(MoveReport::Copied {
        bytes_copied: sent,
        rate_bytes_per_sec: rate(sent, started),
        checksum: match checksums.as_slice() {
            [(_, only)] => format!("sha256:{only}"),
            all => all
                .iter()
                .map(|(volume, sum)| format!("{volume}=sha256:{sum}"))
                .collect::<Vec<_>>()
                .join(", "),
        },
    })
}

fn rate(bytes: u64, since: Instant) -> u64 {
    let secs = since.elapsed().as_secs_f64().max(1e-3);
    (bytes as f64 / secs) as u64
}

/// The source's clean-up once the pod runs on the target: its copy of the
/// volumes goes, unless it is to be kept.
async fn clean(master: &NodeClient, runtime: &Runtime, order: &MoveOrder) {
    if !order.keep_source {
        loop {
            let mut failed = None;
            for volume in &order.volumes {
                let name = named_volume(&order.pod, volume);
                // A classed volume's directory goes with it.
                if let Err(e) = runtime.docker().remove_volume(&name).await {
                    failed = Some(e.to_string());
                } else if let Err(e) = remove_class_volume_dirs(runtime.config(), &name) {
                    failed = Some(format!("removing volume {name}'s directory: {e}"));
                }
            }
            match failed {
                None => break,
                Some(e) => {
                    warn!(pod = %order.pod, error = %e, "removing the moved pod's volumes failed; retrying");
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
        info!(pod = %order.pod, "the moved pod's source copy is removed");
    }
    report(master, &order.pod, &MoveReport::Cleaned).await;
}

/// Accepts transfers for the moves this node is the target of.
async fn listen(
    server: Arc<rustls::ServerConfig>,
    runtime: Arc<Runtime>,
    expected: Arc<Mutex<Vec<MoveOrder>>>,
) {
    let listener = loop {
        match TcpListener::bind(("0.0.0.0", TRANSFER_PORT)).await {
            Ok(listener) => break listener,
            Err(e) => {
                warn!(error = %e, port = TRANSFER_PORT, "cannot listen for volume transfers; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(server);
    loop {
        let Ok((tcp, peer)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, runtime, expected) = (
            acceptor.clone(),
            Arc::clone(&runtime),
            Arc::clone(&expected),
        );
        tokio::spawn(async move {
            if let Err(e) = receive(acceptor, tcp, &runtime, &expected).await {
                warn!(peer = %peer, error = %format!("{e:#}"), "a volume transfer failed");
            }
        });
    }
}

/// Whether the certificate `der` names node `node`.
fn names_node(der: &CertificateDer<'_>, node: &str) -> bool {
    let Ok(cert) = webpki::EndEntityCert::try_from(der) else {
        return false;
    };
    let Ok(name) = ServerName::try_from(node) else {
        return false;
    };
    cert.verify_is_valid_for_subject_name(&name).is_ok()
}

async fn receive(
    acceptor: tokio_rustls::TlsAcceptor,
    tcp: TcpStream,
    runtime: &Runtime,
    expected: &Mutex<Vec<MoveOrder>>,
) -> anyhow::Result<()> {
    let stream = acceptor.accept(tcp).await.context("TLS")?;
    let peer = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.clone().into_owned());
    let (reader, mut writer) = tokio::io::split(stream);
    let mut reader = BufReader::new(reader);
    let mut line = String::new();
    reader.read_line(&mut line).await?;
    let header: Header = serde_json::from_str(&line).context("the transfer's header")?;
    let order = expected
        .lock()
        .ok()
        .and_then(|e| e.iter().find(|o| o.pod == header.pod).cloned());
    let refusal = match (&order, &peer) {
        (None, _) => Some(format!("no move of pod {} to this node", header.pod)),
        (Some(o), _) if !o.phase.before_copy_verified() => {
            Some(format!("pod {}'s copy is verified already", header.pod))
        }
        (Some(o), Some(peer)) if !names_node(peer, &o.from) => Some(format!(
            "the sender is not node {}, the source of pod {}'s move",
            o.from, header.pod
        )),
        (Some(_), None) => Some("no client certificate".to_owned()),
        _ => None,
    };
    if let Some(error) = refusal {
        let answer = Received {
            volume: String::new(),
            bytes: 0,
            sha256: String::new(),
            error: Some(error.clone()),
        };
        let _ = write_line(&mut writer, &answer).await;
        bail!(error);
    }
    let order = order.expect("refused above");
    for volume in &header.volumes {
        if !order.volumes.contains(volume) {
            bail!("pod {} has no named volume {volume}", order.pod);
        }
        let docker_name = named_volume(&order.pod, volume);
        // A classed volume is made in this node's directory of its class,
        // as the pod's own start would make it.
        let device = match order.classes.get(volume) {
            Some(class) => Some(class_volume_dir(runtime.config(), class, &docker_name)?),
            None => None,
        };
        let device = device.as_ref().map(|d| d.display().to_string());
        runtime
            .docker()
            .create_volume(&docker_name, &order.pod, device.as_deref())
            .await?;
        let dir = runtime
            .docker()
            .volume_mountpoint(&docker_name)
            .await?
            .with_context(|| format!("volume {volume} is not here after its creation"))?;
        let (tx, rx) = mpsc::channel::<Vec<u8>>(8);
        let unpacking = tokio::task::spawn_blocking(move || unpack(std::path::Path::new(&dir), rx));
        let mut received: u64 = 0;
        loop {
            let len = reader.read_u32().await? as usize;
            if len == 0 {
                break;
            }
            if len > 4 * FRAME {
                bail!("a frame of {len} bytes");
            }
            let mut frame = vec![0; len];
            reader.read_exact(&mut frame).await?;
            received += len as u64;
            if tx.send(frame).await.is_err() {
                break;
            }
        }
        drop(tx);
        let answer = match unpacking.await? {
            Ok((sha256, bytes)) => Received {
                volume: volume.clone(),
                bytes,
                sha256,
                error: None,
            },
            Err(e) => Received {
                volume: volume.clone(),
                bytes: received,
                sha256: String::new(),
                error: Some(format!("unpacking volume {volume}: {}", chain(&e))),
            },
        };
        write_line(&mut writer, &answer).await?;
        info!(pod = %order.pod, volume = %volume, bytes = answer.bytes, "volume received");
    }
    Ok(())
}

/// Packs `dir` into frames sent on `tx` (a blocking call); the stream's
/// SHA-256 and length.
fn pack(dir: &std::path::Path, tx: mpsc::Sender<Vec<u8>>) -> std::io::Result<(String, u64)> {
    let mut builder = tar::Builder::new(FrameWriter {
        tx,
        buf: Vec::with_capacity(FRAME),
        tally: Tally::new(),
    });
    builder.follow_symlinks(false);
    builder.append_dir_all(".", dir)?;
    let mut out = builder.into_inner()?;
    out.flush()?;
    Ok(out.tally.finish())
}

/// Empties `dir`, then unpacks the frames from `rx` into it (a blocking
/// call); the SHA-256 and length of every byte received.
fn unpack(dir: &std::path::Path, rx: mpsc::Receiver<Vec<u8>>) -> std::io::Result<(String, u64)> {
    // Every attempt starts over on an empty volume.
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() && !path.is_symlink() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    let mut archive = tar::Archive::new(FrameReader {
        rx,
        current: Vec::new(),
        at: 0,
        tally: Tally::new(),
    });
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_preserve_mtime(true);
    archive.set_overwrite(true);
    archive.unpack(dir)?;
    // Whatever follows the archive's end in the stream is drained.
    let mut rest = archive.into_inner();
    std::io::copy(&mut rest, &mut std::io::sink())?;
    Ok(rest.tally.finish())
}

/// An error with its causes, for a report.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(pod: &str, role: MoveRole, phase: berth_model::MovePhase) -> MoveOrder {
        MoveOrder {
            pod: pod.into(),
            volumes: vec!["data".into()],
            classes: BTreeMap::new(),
            role,
            from: "h2".into(),
            to: "h3".into(),
            to_address: "10.0.0.3".into(),
            phase,
            keep_source: false,
        }
    }

    #[test]
    fn only_a_copy_given_up_before_it_was_verified_is_discarded() {
        use berth_model::MovePhase::{Copying, Starting};
        let copying = order("db-0", MoveRole::Target, Copying);
        let gone = Orders::default();
        let discarded = abandoned(std::slice::from_ref(&copying), &gone);
        assert_eq!(discarded.len(), 1);
        assert_eq!(discarded[0], copying);
        // Still moving, or the pod runs here now: kept.
        let still = Orders {
            moves: vec![copying.clone()],
            assigned: Vec::new(),
        };
        assert!(abandoned(std::slice::from_ref(&copying), &still).is_empty());
        let here = Orders {
            moves: Vec::new(),
            assigned: vec!["db-0".into()],
        };
        assert!(abandoned(std::slice::from_ref(&copying), &here).is_empty());
        // A verified copy is the pod's data: never discarded here.
        let verified = order("db-0", MoveRole::Target, Starting);
        assert!(abandoned(&[verified], &gone).is_empty());
        // The source's copy is the source's business.
        let source = order("db-0", MoveRole::Source, Copying);
        assert!(abandoned(&[source], &gone).is_empty());
    }

    #[test]
    fn a_volume_packed_into_frames_unpacks_the_same() {
        let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../target/volume-move-unit-test");
        let _ = std::fs::remove_dir_all(&base);
        let (from, to) = (base.join("from"), base.join("to"));
        std::fs::create_dir_all(from.join("sub")).unwrap();
        std::fs::create_dir_all(&to).unwrap();
        std::fs::write(to.join("stale"), b"old").unwrap();
        let blob: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(from.join("blob"), &blob).unwrap();
        std::fs::write(from.join("sub/small"), b"x").unwrap();
        let (tx, rx) = mpsc::channel(4);
        let packing = {
            let from = from.clone();
            std::thread::spawn(move || pack(&from, tx))
        };
        let unpacked = unpack(&to, rx).unwrap_or_else(|e| panic!("{}", chain(&e)));
        let packed = packing.join().unwrap().unwrap();
        // Both ends tally the same stream: a tar of more than the files.
        assert_eq!(packed, unpacked);
        assert!(packed.1 > 3_000_000, "{packed:?}");
        assert_eq!(packed.0.len(), 64, "{packed:?}");
        assert_eq!(std::fs::read(to.join("blob")).unwrap(), blob);
        assert_eq!(std::fs::read(to.join("sub/small")).unwrap(), b"x");
        assert!(!to.join("stale").exists());
        std::fs::remove_dir_all(&base).unwrap();
    }
}
