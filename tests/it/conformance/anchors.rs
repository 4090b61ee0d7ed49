//! The anchors: nginx and HAProxy from Debian packages, each in front of its own
//! recording backends, so every vector can be compared with what two widely deployed
//! proxies do with the same bytes.
//!
//! Every vector gets its own listening port on each proxy (and its own backend), so the
//! vectors run concurrently and a backend's record belongs to exactly one vector. The
//! proxies cannot report the ports they bound. HAProxy is handed listening sockets the
//! test bound itself (`bind fd@N`, inherited descriptors), so no port is ever released
//! and bound again. nginx 1.22 crashes when given inherited sockets without a master
//! process, so its ports are picked by binding 127.0.0.1:0 and releasing just before its
//! start; it counts as started once its own log says its sockets are bound, and it starts
//! again on other ports if one was taken in between. Readiness is then polled by
//! connecting with a deadline. Both run in the foreground and are killed on drop; their
//! logs stay in a temp dir for the failure message.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const NGINX: &str = "/usr/sbin/nginx";
pub const HAPROXY: &str = "/usr/sbin/haproxy";

/// One listener to configure: its protocol and the backend it forwards to.
pub struct Site {
    pub h2: bool,
    pub backend: SocketAddr,
}

/// A running anchor proxy.
pub struct Anchor {
    /// One address per site, in order.
    pub addrs: Vec<SocketAddr>,
    child: Child,
    /// Config, logs and temp files; removed on drop.
    _dir: tempfile::TempDir,
}

// === impl Anchor ===

impl Anchor {
    /// Starts nginx with one `server` per site; `Ok(None)` when it is not installed.
    pub fn nginx(sites: &[Site]) -> Result<Option<Anchor>, String> {
        Anchor::nginx_servers(sites.len(), |i, port| {
            let site = &sites[i];
            // nginx 1.22 spells h2c prior knowledge as `listen ... http2` without ssl.
            let h2 = if site.h2 { " http2" } else { "" };
            format!(
                "    server {{ listen 127.0.0.1:{port}{h2}; location / {{ proxy_pass http://{}; }} }}\n",
                site.backend
            )
        })
    }

    /// Starts nginx as an h2c origin (HTTP/2 with prior knowledge): every request is
    /// answered `200` with `host=` and the host nginx took from it. `Ok(None)` when nginx
    /// is not installed.
    pub fn nginx_h2_origin() -> Result<Option<Anchor>, String> {
        Anchor::nginx_servers(1, |_, port| {
            format!(
                "    server {{ listen 127.0.0.1:{port} http2; location / {{ return 200 \"host=$host\\n\"; }} }}\n"
            )
        })
    }

    /// [`Anchor::nginx_h2_origin`] for a test of its own: `None` (the test skips) when
    /// nginx is not installed, a failure when `NINEFOLD_REQUIRE_ANCHORS=1` wants it.
    pub fn nginx_h2_origin_for_test() -> Option<Anchor> {
        let origin = Anchor::nginx_h2_origin().unwrap();
        if origin.is_none() {
            let require = std::env::var("NINEFOLD_REQUIRE_ANCHORS").is_ok_and(|v| v == "1");
            assert!(
                !require,
                "nginx: not installed, and NINEFOLD_REQUIRE_ANCHORS=1"
            );
            crate::support::skipped(
                "a test against nginx: it is not installed (scripts/test installs it; NINEFOLD_REQUIRE_ANCHORS=1 fails instead)",
            );
        }
        origin
    }

    /// The installed nginx's version (`1.22.1`, from `nginx -v`); `None` when it is not
    /// installed or says no version.
    pub fn nginx_version() -> Option<String> {
        let out = Command::new(NGINX).arg("-v").output().ok()?;
        // `nginx version: nginx/1.22.1`, on stderr.
        let text = String::from_utf8_lossy(&out.stderr);
        let v = text.split("nginx/").nth(1)?.split_whitespace().next()?;
        Some(v.to_owned())
    }

    /// The installed HAProxy's upstream version (`2.6.12`, from `haproxy -v`, without
    /// Debian's revision: a patch that changes what HAProxy does shows in the table's
    /// cells anyway); `None` when it is not installed or says no version.
    pub fn haproxy_version() -> Option<String> {
        let out = Command::new(HAPROXY).arg("-v").output().ok()?;
        // `HAProxy version 2.6.12-1+deb12u3 2025/10/03 - https://haproxy.org/`.
        let text = String::from_utf8_lossy(&out.stdout);
        let v = text.split("version ").nth(1)?.split_whitespace().next()?;
        Some(v.split('-').next()?.to_owned())
    }

    /// Starts nginx with `n` servers, `server(i, port)` writing each one's block.
    fn nginx_servers(
        n: usize,
        server: impl Fn(usize, u16) -> String,
    ) -> Result<Option<Anchor>, String> {
        if !Path::new(NGINX).exists() {
            return Ok(None);
        }
        // A port released for nginx may be taken by another test before nginx binds it:
        // then nginx says so and exits, and it starts again on other ports.
        let mut last = String::new();
        for _ in 0..3 {
            let dir = tempfile::tempdir().unwrap();
            let ports = free_ports(n);
            let servers: String = ports
                .iter()
                .enumerate()
                .map(|(i, &p)| server(i, p))
                .collect();
            let mut child = Anchor::spawn_nginx(&servers, &dir)?;
            match Anchor::nginx_started(&mut child, &dir) {
                Ok(()) => return Anchor::ready("nginx", child, dir, ports).map(Some),
                Err(log) if log.contains("Address already in use") => last = log,
                Err(log) => return Err(format!("nginx did not start: {log}")),
            }
        }
        Err(format!("nginx found a port taken three times: {last}"))
    }

    /// Writes nginx's config with `servers` (its `server` blocks) into `dir`, and
    /// starts it.
    fn spawn_nginx(servers: &str, dir: &tempfile::TempDir) -> Result<Child, String> {
        let d = dir.path().display();
        let conf = format!(
            "error_log {d}/error.log info;
pid {d}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    proxy_http_version 1.1;
    proxy_set_header Connection \"\";
    # The authority the client named: the request line's when absolute-form, else Host.
    proxy_set_header Host $host;
    proxy_connect_timeout 2s;
    proxy_read_timeout 3s;
    proxy_send_timeout 3s;
    client_header_timeout 3s;
    client_body_timeout 3s;
{servers}}}
"
        );
        let path = dir.path().join("nginx.conf");
        std::fs::write(&path, conf).unwrap();
        let log = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
        Command::new(NGINX)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&path)
            .args(["-g", "daemon off; master_process off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("nginx did not start: {e}"))
    }

    /// Waits until nginx has bound every port: it logs its limits (`getrlimit`) only
    /// once its configuration, listening sockets included, is in place. Before that, a
    /// connection that succeeds may have reached whoever else holds the port. On
    /// failure, nginx's logs.
    fn nginx_started(child: &mut Child, dir: &tempfile::TempDir) -> Result<(), String> {
        let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap_or_default();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if read("error.log").contains("getrlimit(") {
                return Ok(());
            }
            let exited = child.try_wait().ok().flatten().is_some();
            if exited || Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{}{}", read("stderr.log"), read("error.log")));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts HAProxy with one `listen` section per site; `Ok(None)` when it is not
    /// installed.
    pub fn haproxy(sites: &[Site]) -> Result<Option<Anchor>, String> {
        if !Path::new(HAPROXY).exists() {
            return Ok(None);
        }
        let dir = tempfile::tempdir().unwrap();
        let held = listeners(sites.len());
        let ports = ports(&held);
        let mut cfg = String::from(
            "global
    maxconn 4096
defaults
    mode http
    timeout connect 2s
    timeout client 3s
    timeout server 3s
    timeout http-request 3s
",
        );
        for (i, (site, l)) in sites.iter().zip(&held).enumerate() {
            let h2 = if site.h2 { " proto h2" } else { "" };
            cfg.push_str(&format!(
                "listen v{i}\n    bind fd@{}{h2}\n    server s{i} {}\n",
                l.as_raw_fd(),
                site.backend
            ));
        }
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, cfg).unwrap();
        let log = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
        let mut cmd = Command::new(HAPROXY);
        cmd.arg("-f")
            .arg(&path)
            .arg("-db")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let child =
            spawn_with(&mut cmd, &held).map_err(|e| format!("haproxy did not start: {e}"))?;
        drop(held);
        Anchor::ready("haproxy", child, dir, ports).map(Some)
    }

    /// Polls every port until it accepts, or fails with the proxy's log.
    fn ready(
        name: &'static str,
        mut child: Child,
        dir: tempfile::TempDir,
        ports: Vec<u16>,
    ) -> Result<Anchor, String> {
        let addrs: Vec<SocketAddr> = ports
            .iter()
            .map(|p| SocketAddr::from(([127, 0, 0, 1], *p)))
            .collect();
        let deadline = Instant::now() + Duration::from_secs(15);
        for addr in &addrs {
            loop {
                if TcpStream::connect_timeout(addr, Duration::from_millis(200)).is_ok() {
                    break;
                }
                let exited = child.try_wait().ok().flatten();
                if exited.is_some() || Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    let log =
                        std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default();
                    return Err(format!("{name} did not listen on {addr}: {log}"));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(Anchor {
            addrs,
            child,
            _dir: dir,
        })
    }
}

impl Drop for Anchor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `n` distinct free ports for nginx: all bound at once (so they differ), then
/// released (see [`Anchor::nginx`] for the race that leaves).
fn free_ports(n: usize) -> Vec<u16> {
    ports(&listeners(n))
}

/// `n` listening sockets on 127.0.0.1, for a proxy to inherit.
fn listeners(n: usize) -> Vec<TcpListener> {
    (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect()
}

/// The ports `held` listen on.
fn ports(held: &[TcpListener]) -> Vec<u16> {
    held.iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// Spawns `cmd` with the sockets `held` open in the child at the same descriptor
/// numbers (the test's own copies stay close-on-exec, so no other child gets them).
fn spawn_with(cmd: &mut Command, held: &[TcpListener]) -> std::io::Result<Child> {
    let fds: Vec<RawFd> = held.iter().map(|l| l.as_raw_fd()).collect();
    // SAFETY: the closure runs in the forked child before `exec` and only calls
    // `fcntl`, which is async-signal-safe; it touches no lock and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            for &fd in &fds {
                if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    cmd.spawn()
}
