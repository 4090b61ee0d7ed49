"""Probes: read the gateway's live state, error budgets and health (no token)."""

from . import admin_request

__all__ = [
    "endpoint_state",
    "endpoint_available",
    "slo_budget_remaining",
    "slo_burn_rate",
    "gateway_health",
]


def endpoint_state(cluster, endpoint, admin="127.0.0.1:9901"):
    """The endpoint's live state as `/api/v1/state` has it (health, `why` it is out,
    drained, breaker, TCP sessions, role)."""
    state = admin_request(admin, "/api/v1/state")
    for c in state.get("clusters", []):
        if c.get("name") == cluster:
            for e in c.get("endpoints", []):
                if e.get("address") == endpoint:
                    return e
    raise RuntimeError("no endpoint %s in cluster %s" % (endpoint, cluster))


def endpoint_available(cluster, endpoint, admin="127.0.0.1:9901"):
    """Whether the endpoint takes traffic now."""
    return bool(endpoint_state(cluster, endpoint, admin).get("available"))


def _slo(slo, admin):
    for s in admin_request(admin, "/api/v1/slos").get("slos", []):
        if s.get("name") == slo:
            return s
    raise RuntimeError("no slo %s on the gateway" % slo)


def slo_budget_remaining(slo, admin="127.0.0.1:9901"):
    """The SLO's remaining error budget as a share in [0, 1]."""
    return _slo(slo, admin)["budget"]["remaining_ratio"]


def slo_burn_rate(slo, window="5m", admin="127.0.0.1:9901"):
    """The SLO's burn rate over `window` (`5m`, `30m`, `1h`, `6h`, `1d`, `3d`); 0 with
    no traffic yet."""
    return _slo(slo, admin)["burn_rates"].get(window) or 0.0


def gateway_health(admin="127.0.0.1:9901"):
    """`/health`'s status word: `ok`, `degraded` or `down`."""
    return admin_request(admin, "/health")["status"]
