"""Chaos Toolkit actions and probes for the ninefold gateway's admin API.

The admin API is JSON over HTTP on the admin listener (`admin.bind`, loopback by
default); mutations need the bearer token (`admin.token`). Nothing here keeps state:
each call is one request.
"""

import json
import urllib.error
import urllib.request

__all__ = ["admin_request"]
__version__ = "0.1.0"


def admin_request(admin, path, method="GET", body=None, token=None, timeout=5):
    """One request to the admin API at `admin` (`host:port`): the decoded JSON answer.

    Raises `RuntimeError` with the status and body when the answer is not 2xx, so a
    failed action fails the experiment instead of passing silently.
    """
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request("http://%s%s" % (admin, path), data=data, method=method)
    if data is not None:
        req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", "Bearer %s" % token)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            text = resp.read().decode()
    except urllib.error.HTTPError as e:
        raise RuntimeError("%s %s: status %s: %s" % (method, path, e.code, e.read().decode()))
    return json.loads(text) if text else None
