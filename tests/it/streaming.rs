//! Bodies stream both ways: 1 GiB up and 1 GiB down pass through the gateway while its
//! resident memory stays flat.

use crate::support::*;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Frame;
use hyper::Request;
use std::time::Duration;

const GIB: u64 = 1 << 30;
/// Allowed RSS growth while 1 GiB passes: buffers of a few connections, not the body.
const MAX_GROWTH_KIB: u64 = 48 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gib_each_way_with_flat_memory() {
    let b = Backend::start("b").await;
    let gw = Gateway::start(&simple_config(&[&b], "", "        timeout: 120s"));
    // Warm up the pools and allocator.
    assert_eq!(
        get(&gw.url("web", "/big/1048576")).await.body.len(),
        1 << 20
    );
    let base = gw.rss_kib();

    // Download.
    let resp = tokio::time::timeout(
        Duration::from_secs(120),
        client().request(
            Request::get(gw.url("web", &format!("/big/{GIB}")))
                .body(empty())
                .unwrap(),
        ),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut n = 0u64;
    let mut peak = base;
    let mut frames = 0u64;
    while let Some(f) = body.frame().await {
        n += f.unwrap().data_ref().map_or(0, |d| d.len() as u64);
        frames += 1;
        if frames % 512 == 0 {
            peak = peak.max(gw.rss_kib());
        }
    }
    assert_eq!(n, GIB);
    assert!(
        peak - base < MAX_GROWTH_KIB,
        "download: RSS grew {} KiB",
        peak - base
    );

    // Upload, generated as it goes.
    let chunk = Bytes::from(vec![b'u'; 256 * 1024]);
    let chunks = GIB / chunk.len() as u64;
    let stream = futures_util::stream::iter(
        (0..chunks).map(move |_| Ok::<_, std::io::Error>(Frame::data(chunk.clone()))),
    );
    let req = Request::post(gw.url("web", "/upload"))
        .body(http_body_util::StreamBody::new(stream).boxed())
        .unwrap();
    let upload_peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(base));
    let rss_probe = {
        let pid = gw.pid();
        let peak = upload_peak.clone();
        tokio::spawn(async move {
            loop {
                let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                if let Some(v) = s
                    .lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                {
                    peak.fetch_max(v, std::sync::atomic::Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let a = tokio::time::timeout(Duration::from_secs(120), send(&client(), req))
        .await
        .unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["received"], GIB);
    rss_probe.abort();
    let peak = upload_peak
        .load(std::sync::atomic::Ordering::Relaxed)
        .max(gw.rss_kib());
    assert!(
        peak - base < MAX_GROWTH_KIB,
        "upload: RSS grew {} KiB",
        peak - base
    );
}
