//! SLO alerts as Alertmanager takes them: a firing or resolved burn-rate alert in
//! the v2 format, posted to the SLO's webhook (one POST per webhook URL, retried with
//! backoff on a network error or a 5xx), re-sent every `RESEND` while it fires.

use super::window::AlertEval;
use crate::config::SloDef;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// How often a firing alert is sent again (Alertmanager forgets alerts whose
/// `endsAt` passed).
pub(super) const RESEND: u64 = 60;

/// Each SLO's webhook URL by SLO name, as the running config sets it; the engine
/// writes it at each reload, the sender reads it for each batch.
pub(super) type Webhooks = Arc<Mutex<HashMap<String, String>>>;

/// How long one alert POST may take, connect included.
const POST_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) fn log_change(def: &SloDef, e: &AlertEval) {
    let burn = e.long_burn_rate.unwrap_or(0.0);
    if e.firing {
        tracing::warn!(
            slo = %def.name, severity = %e.severity, long_window = %e.long_window, short_window = %e.short_window,
            burn_rate = burn, threshold = e.burn_rate_threshold,
            "SLO alert firing: error budget burning at {burn:.1}× over {} (threshold {}×)", e.long_window, e.burn_rate_threshold
        );
    } else {
        tracing::info!(
            slo = %def.name, severity = %e.severity, long_window = %e.long_window, short_window = %e.short_window,
            "SLO alert resolved"
        );
    }
}

/// One alert in Alertmanager's v2 format.
pub(super) fn alert_json(
    def: &SloDef,
    e: &AlertEval,
    started: u64,
    now: u64,
    admin_url: &str,
    instance: &str,
) -> Value {
    let mut labels = serde_json::Map::new();
    labels.insert("alertname".into(), json!("ErrorBudgetBurn"));
    labels.insert("slo".into(), json!(def.name));
    labels.insert("service".into(), json!(def.service));
    labels.insert("severity".into(), json!(e.severity));
    labels.insert("long_window".into(), json!(e.long_window));
    labels.insert("short_window".into(), json!(e.short_window));
    // Several gateways measure the same SLO: each one's alert is its own.
    labels.insert("gateway".into(), json!(instance));
    for (k, v) in &def.alerts.labels {
        labels.insert(k.clone(), json!(v));
    }
    let tte = e
        .time_to_exhaustion_seconds
        .map_or("unknown".to_owned(), crate::availability::human_secs);
    let ends = if e.firing { now + 4 * RESEND } else { now };
    json!({
        "labels": labels,
        "annotations": {
            "summary": format!(
                "{}: error budget burning at {:.1}× over {} and {:.1}× over {} (threshold {}×)",
                def.title(),
                e.long_burn_rate.unwrap_or(0.0), e.long_window,
                e.short_burn_rate.unwrap_or(0.0), e.short_window,
                e.burn_rate_threshold
            ),
            "burn_rate_long": format!("{:.3}", e.long_burn_rate.unwrap_or(0.0)),
            "burn_rate_short": format!("{:.3}", e.short_burn_rate.unwrap_or(0.0)),
            "time_to_exhaustion": tte,
            "objective": def.objective_text,
        },
        "startsAt": rfc3339(started.min(now)),
        "endsAt": rfc3339(ends),
        "generatorURL": admin_url,
    })
}

/// Posts alert batches, retrying a failed send (network error or 5xx) with backoff.
pub(super) async fn sender(webhooks: Webhooks, mut rx: mpsc::UnboundedReceiver<Vec<Value>>) {
    while let Some(batch) = rx.recv().await {
        // One POST per webhook URL.
        let mut by_url: HashMap<String, Vec<Value>> = HashMap::new();
        for a in batch {
            let slo = a["labels"]["slo"].as_str().unwrap_or_default().to_owned();
            let url = webhooks
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&slo)
                .cloned();
            if let Some(url) = url {
                by_url.entry(url).or_default().push(a);
            }
        }
        for (url, alerts) in by_url {
            let body = serde_json::to_vec(&alerts).unwrap_or_default();
            let mut delay = Duration::from_millis(250);
            for attempt in 1..=6 {
                match post(&url, &body).await {
                    Ok(s) if (200..300).contains(&s) => break,
                    Ok(s) if (400..500).contains(&s) => {
                        tracing::error!(%url, status = s, "alert webhook refused the alerts; not retrying");
                        break;
                    }
                    Ok(s) => {
                        tracing::warn!(%url, status = s, attempt, "alert webhook failed; retrying")
                    }
                    Err(e) => {
                        tracing::warn!(%url, error = %e, attempt, "alert webhook unreachable; retrying")
                    }
                }
                if attempt == 6 {
                    tracing::error!(%url, "alert webhook: giving up after 6 attempts");
                    break;
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(8));
            }
        }
    }
}

/// POSTs `body` (JSON) to `url`; the answer's status. The answer's body is read to its
/// end (chunked or not) so the exchange completes, and then ignored.
async fn post(url: &str, body: &[u8]) -> Result<u16, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("{e}"))?;
    let host = uri.host().ok_or("no host")?.to_owned();
    let port = uri.port_u16().unwrap_or(80);
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let authority = format!("{host}:{port}");
    let req = http::Request::post(path)
        .header(http::header::HOST, &authority)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::copy_from_slice(
            body,
        )))
        .map_err(|e| e.to_string())?;
    let answer = crate::oneshot::exchange(&authority, req, POST_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    Ok(answer.status.as_u16())
}

pub(super) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "ninefold".into())
}

/// Unix seconds as RFC 3339 UTC (`2026-11-25T10:00:00Z`).
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_608_000), "2026-11-25T12:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
