"""Actions: change what the gateway does, through its admin API (token-checked)."""

from . import admin_request

__all__ = ["drain_endpoint", "enable_endpoint", "force_breaker", "add_fault", "remove_fault"]


def _endpoint_path(cluster, endpoint):
    return "/api/v1/clusters/%s/endpoints/%s" % (cluster, endpoint)


def drain_endpoint(cluster, endpoint, admin="127.0.0.1:9901", token=None):
    """Drain `endpoint` of `cluster`: no new requests (and, in a cluster with
    `on_marked_down: shutdown_sessions`, its TCP sessions closed). Returns the answer."""
    return admin_request(admin, _endpoint_path(cluster, endpoint) + "/drain", "POST", token=token)


def enable_endpoint(cluster, endpoint, admin="127.0.0.1:9901", token=None):
    """Put a drained endpoint back in rotation."""
    return admin_request(admin, _endpoint_path(cluster, endpoint) + "/enable", "POST", token=token)


def force_breaker(cluster, endpoint, state, admin="127.0.0.1:9901", token=None):
    """Force an endpoint's circuit breaker: `open`, `close` or `reset`."""
    if state not in ("open", "close", "reset"):
        raise ValueError("state must be open, close or reset, got %r" % state)
    return admin_request(
        admin, _endpoint_path(cluster, endpoint) + "/breaker/" + state, "POST", token=token
    )


def add_fault(route, ttl, abort_percent=None, abort_status=503, delay_percent=None,
              delay=None, admin="127.0.0.1:9901", token=None):
    """Add a run-time fault on `route` that ends by itself after `ttl` (`30s`): an
    abort (`abort_percent` of requests answered `abort_status`) and/or a delay
    (`delay_percent` of requests held `delay`, `200ms`). Returns the fault (with `id`)."""
    body = {"route": route, "ttl": ttl}
    if abort_percent is not None:
        body["abort"] = {"percent": str(abort_percent), "status": abort_status}
    if delay_percent is not None:
        body["delay"] = {"percent": str(delay_percent), "duration": delay or "100ms"}
    return admin_request(admin, "/api/v1/faults", "POST", body=body, token=token)


def remove_fault(fault_id, admin="127.0.0.1:9901", token=None):
    """End a run-time fault before its ttl."""
    return admin_request(admin, "/api/v1/faults/%s" % fault_id, "DELETE", token=token)
