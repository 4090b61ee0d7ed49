//! ninefold answering DNS (`dns:`): the authoritative server of a few zones, whose A
//! and AAAA records answer with the addresses of a cluster's endpoints that are
//! eligible now (health, drain, ejection, breaker), from the first priority group that
//! has any: priority 0 is the seed's PRIMARY answer, priority 1 its SECONDARY, as a
//! Route 53 failover record set with a health check. When no endpoint is eligible it
//! answers the whole first group (`when_none_eligible: first_group`, the default: a
//! client that gets no address has no chance), or nothing.
//!
//! It serves UDP and TCP on one port, on a thread and runtime of its own, off the data
//! path, and reads the running snapshot at each query, so a reload's zones apply at
//! once (a new `dns.bind` waits for a restart). Each zone has an SOA (its serial is the
//! configuration's generation) and an NS (`ns1.<zone>`); a name in a zone without a
//! record is NXDOMAIN, a name outside every zone is REFUSED, and there is no recursion.
//! The wire format is `hickory-proto`'s. Queries are counted in
//! `ninefold_dns_queries_total{type,rcode}`.

use crate::config::{DnsConfig, DnsKind, DnsRecord, DnsZone, WhenNoneEligible};
use crate::snapshot::{ClusterSnap, Shared, Snapshot};
use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, NS, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

/// The largest UDP answer without EDNS; longer ones are truncated (TC) so the client
/// asks again over TCP.
const UDP_PLAIN: usize = 512;
/// The largest UDP answer with EDNS, whatever the client offers.
const UDP_EDNS: usize = 1232;
/// A TCP connection idle this long is closed (and a message must arrive whole within
/// it).
const TCP_IDLE: Duration = Duration::from_secs(10);
/// TCP connections served at once; more are closed at once.
const TCP_MAX: usize = 256;

/// The running DNS server.
pub struct Dns {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Binds `cfg.bind` on UDP and TCP (port 0: one free port for both) and serves it on a
/// thread of its own, reading `shared`.
pub fn start(shared: Arc<Shared>, cfg: &DnsConfig) -> anyhow::Result<Dns> {
    let (udp, tcp) = bind(cfg.bind)?;
    let addr = udp.local_addr()?;
    let (stop, mut stopped) = watch::channel(false);
    let thread = crate::runtime::thread("ninefold-dns", move |rt| {
        rt.block_on(async move {
            let (udp, tcp) = match (
                tokio::net::UdpSocket::from_std(udp),
                tokio::net::TcpListener::from_std(tcp),
            ) {
                (Ok(u), Ok(t)) => (Arc::new(u), t),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::error!("dns: {e}");
                    return;
                }
            };
            tokio::select! {
                _ = serve_udp(udp, shared.clone()) => {}
                _ = serve_tcp(tcp, shared) => {}
                _ = stopped.wait_for(|s| *s) => {}
            }
        });
    })?;
    Ok(Dns {
        addr,
        stop,
        thread: Some(thread),
    })
}

impl Dns {
    /// The address served (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving and joins the thread.
    pub fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<(std::net::UdpSocket, std::net::TcpListener)> {
    let mut last = None;
    for _ in 0..16 {
        let udp = std::net::UdpSocket::bind(addr)?;
        match std::net::TcpListener::bind(udp.local_addr()?) {
            Ok(tcp) => {
                udp.set_nonblocking(true)?;
                tcp.set_nonblocking(true)?;
                return Ok((udp, tcp));
            }
            // The port picked for UDP is taken on TCP: pick another.
            Err(e) if addr.port() == 0 => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no port free on both UDP and TCP")))
}

async fn serve_udp(socket: Arc<tokio::net::UdpSocket>, shared: Arc<Shared>) {
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        if let Some(answer) = answer(&shared, &buf[..n], true) {
            let _ = socket.send_to(&answer, peer).await;
        }
    }
}

async fn serve_tcp(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(TCP_MAX));
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        // Bounded: a flood of idle connections cannot take the thread's memory.
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let _slot = slot;
            // Messages framed by a two-byte length, several per connection.
            loop {
                let mut len = [0u8; 2];
                let read = tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut len)).await;
                if !matches!(read, Ok(Ok(_))) {
                    return;
                }
                let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
                let read = tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut msg)).await;
                if !matches!(read, Ok(Ok(_))) {
                    return;
                }
                let Some(answer) = answer(&shared, &msg, false) else {
                    return;
                };
                let Ok(n) = u16::try_from(answer.len()) else {
                    return;
                };
                let mut out = Vec::with_capacity(answer.len() + 2);
                out.extend_from_slice(&n.to_be_bytes());
                out.extend_from_slice(&answer);
                if stream.write_all(&out).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// The answer to the query in `bytes`, counted; `None` for bytes too short to answer.
fn answer(shared: &Shared, bytes: &[u8], udp: bool) -> Option<Vec<u8>> {
    let snap = shared.snapshot.load();
    let (msg, qtype) = respond(&snap, bytes, crate::upstream::now_ms())?;
    let rcode = rcode_label(msg.metadata.response_code);
    shared
        .metrics
        .dns_queries
        .with_label_values(&[qtype, rcode])
        .inc();
    let limit = if !udp {
        usize::MAX
    } else if Message::from_vec(bytes).is_ok_and(|q| q.edns.is_some()) {
        UDP_EDNS
    } else {
        UDP_PLAIN
    };
    let out = msg.to_vec().ok()?;
    if out.len() <= limit {
        return Some(out);
    }
    msg.truncate().to_vec().ok()
}

/// The answer to the query in `bytes` at `now` (ms of `upstream::now_ms`), and the
/// query's type for the metric; `None` when there is not even an id to answer.
pub fn respond(snap: &Snapshot, bytes: &[u8], now: u64) -> Option<(Message, &'static str)> {
    let zones = snap.config.dns.as_ref().map(|d| &d.zones)?;
    let req = match Message::from_vec(bytes) {
        Ok(m) => m,
        Err(_) if bytes.len() >= 2 => {
            let id = u16::from_be_bytes([bytes[0], bytes[1]]);
            return Some((
                Message::error_msg(id, OpCode::Query, ResponseCode::FormErr),
                "invalid",
            ));
        }
        Err(_) => return None,
    };
    let mut resp = Message::response(req.metadata.id, req.metadata.op_code);
    resp.metadata.recursion_desired = req.metadata.recursion_desired;
    resp.metadata.recursion_available = false;
    if req.metadata.message_type != MessageType::Query || req.metadata.op_code != OpCode::Query {
        resp.metadata.response_code = ResponseCode::NotImp;
        return Some((resp, "other"));
    }
    let Some(q) = req.queries.first().cloned() else {
        resp.metadata.response_code = ResponseCode::FormErr;
        return Some((resp, "none"));
    };
    let qtype = type_label(q.query_type);
    resp.add_query(q.clone());
    let qname = q.name.to_ascii().trim_end_matches('.').to_ascii_lowercase();
    // The closest enclosing zone.
    let zone = zones
        .iter()
        .filter(|z| qname == z.name || qname.ends_with(&format!(".{}", z.name)))
        .max_by_key(|z| z.name.len());
    let Some(zone) = zone else {
        resp.metadata.response_code = ResponseCode::Refused;
        return Some((resp, qtype));
    };
    resp.metadata.authoritative = true;
    let soa = soa(zone, snap.generation);
    let apex = qname == zone.name;
    let records: Vec<&DnsRecord> = zone.records.iter().filter(|r| r.name == qname).collect();
    if !apex && records.is_empty() {
        resp.metadata.response_code = ResponseCode::NXDomain;
        resp.authorities.push(soa);
        return Some((resp, qtype));
    }
    let any = q.query_type == RecordType::ANY;
    if apex && (q.query_type == RecordType::SOA || any) {
        resp.answers.push(soa.clone());
    }
    if apex && (q.query_type == RecordType::NS || any) {
        resp.answers.push(ns(zone));
    }
    for r in records {
        let wanted = match r.kind {
            DnsKind::A => q.query_type == RecordType::A,
            DnsKind::Aaaa => q.query_type == RecordType::AAAA,
        };
        if !(wanted || any) {
            continue;
        }
        let Some(c) = snap.clusters.iter().find(|c| *c.name == *r.cluster) else {
            continue;
        };
        let owner = fqdn(&r.name)?;
        let ttl = r.ttl.as_secs() as u32;
        for ip in addresses(c, r, now) {
            let rdata = match ip {
                IpAddr::V4(v4) => RData::A(A(v4)),
                IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
            };
            resp.answers
                .push(Record::from_rdata(owner.clone(), ttl, rdata));
        }
    }
    if resp.answers.is_empty() {
        // NODATA: the name exists, not with this type (or nothing is answered now).
        resp.authorities.push(soa);
    }
    Some((resp, qtype))
}

/// The addresses record `r` answers with: the eligible endpoints of the first priority
/// group that has any, of the record's family, each address once; else what
/// `when_none_eligible` says.
pub fn addresses(c: &ClusterSnap, r: &DnsRecord, now: u64) -> Vec<IpAddr> {
    let family = |ip: &IpAddr| match r.kind {
        DnsKind::A => ip.is_ipv4(),
        DnsKind::Aaaa => ip.is_ipv6(),
    };
    let eps = c.endpoints();
    let mut groups: Vec<u8> = eps
        .iter()
        .zip(&c.select.meta)
        .filter(|(e, _)| !e.retiring())
        .map(|(_, m)| m.priority)
        .collect();
    groups.sort_unstable();
    groups.dedup();
    let pick = |group: u8, eligible_only: bool| {
        let mut ips: Vec<IpAddr> = eps
            .iter()
            .zip(&c.select.meta)
            // An endpoint discovery removed is never answered, even as a last resort.
            .filter(|(e, m)| {
                m.priority == group && !e.retiring() && (!eligible_only || e.available(now))
            })
            .map(|(e, _)| e.address.ip())
            .filter(family)
            .collect();
        ips.dedup();
        ips.sort();
        ips.dedup();
        ips
    };
    for &g in &groups {
        let ips = pick(g, true);
        if !ips.is_empty() {
            return ips;
        }
    }
    match (r.when_none_eligible, groups.first()) {
        (WhenNoneEligible::FirstGroup, Some(&g)) => pick(g, false),
        _ => Vec::new(),
    }
}

fn fqdn(name: &str) -> Option<Name> {
    Name::from_ascii(format!("{name}.")).ok()
}

fn soa(zone: &DnsZone, generation: u64) -> Record {
    let apex = fqdn(&zone.name).unwrap_or_else(Name::root);
    let mname = fqdn(&format!("ns1.{}", zone.name)).unwrap_or_else(Name::root);
    let rname = fqdn(&format!("hostmaster.{}", zone.name)).unwrap_or_else(Name::root);
    let ttl = zone.ttl.as_secs() as u32;
    let serial = generation as u32;
    let soa = SOA::new(mname, rname, serial, 3600, 600, 86_400, ttl);
    Record::from_rdata(apex, ttl, RData::SOA(soa))
}

fn ns(zone: &DnsZone) -> Record {
    let apex = fqdn(&zone.name).unwrap_or_else(Name::root);
    let target = fqdn(&format!("ns1.{}", zone.name)).unwrap_or_else(Name::root);
    Record::from_rdata(apex, zone.ttl.as_secs() as u32, RData::NS(NS(target)))
}

fn type_label(t: RecordType) -> &'static str {
    match t {
        RecordType::A => "A",
        RecordType::AAAA => "AAAA",
        RecordType::SOA => "SOA",
        RecordType::NS => "NS",
        RecordType::ANY => "ANY",
        RecordType::SRV => "SRV",
        RecordType::TXT => "TXT",
        RecordType::CNAME => "CNAME",
        _ => "other",
    }
}

fn rcode_label(r: ResponseCode) -> &'static str {
    match r {
        ResponseCode::NoError => "NOERROR",
        ResponseCode::NXDomain => "NXDOMAIN",
        ResponseCode::Refused => "REFUSED",
        ResponseCode::FormErr => "FORMERR",
        ResponseCode::NotImp => "NOTIMP",
        ResponseCode::ServFail => "SERVFAIL",
        _ => "other",
    }
}
