"""Join tokens and revocation, as LXD does them: tokens are running operations of class "token"
(GET /1.0/operations), expire after core.remote_token_expiry, are listed by `lxm config trust
list-tokens` and revoked by `revoke-token` (DELETE /1.0/operations/<id>); they do not outlive
lxmd. Removing a certificate (or making it read-only) closes the websockets its client has open:
events and exec sessions. Traffic to 127.0.0.1 only."""

import base64
import json
import ssl
import time


from lxmtest import assert_error_envelope, assert_sync, make_cert, wait_for
from test_https import Client


def token_ops(lxmd):
    """The running operations of class token."""
    ops = assert_sync(lxmd.api("GET", "/1.0/operations?recursion=1"))
    return [op for op in ops.get("running", []) if op["class"] == "token"]


def make_token(lxmd, name):
    out = lxmd.cli("config", "trust", "add", "--name", name, "--quiet").stdout.strip()
    return out


def redeem(port, tmp, token, who):
    c = Client(port, make_cert(tmp, who))
    try:
        return c.req("POST", "/1.0/certificates", {"type": "client", "trust_token": token})
    finally:
        c.close()


def trusted_names(lxmd):
    return sorted(x["name"] for x in
                  assert_sync(lxmd.api("GET", "/1.0/certificates?recursion=1")))


def test_token_is_a_running_operation(lxmd, https):
    port, tmp = https
    r = lxmd.api("POST", "/1.0/certificates", {"token": True, "name": "laptop",
                                               "type": "client"})
    assert r.status == 202, r
    op = r.json["metadata"]
    assert op["class"] == "token" and op["status"] == "Running", op
    md = op["metadata"]
    srv = lxmd.api("GET", "/1.0").json["metadata"]["environment"]
    # LXD's fields, from which its client encodes the token.
    assert md["request"]["name"] == "laptop" and md["request"]["type"] == "client", md
    assert md["fingerprint"] == srv["certificate_fingerprint"]
    assert md["addresses"] == ["127.0.0.1:%d" % port]
    assert len(md["secret"]) == 64
    assert md["expiresAt"] == "0001-01-01T00:00:00Z", md   # no core.remote_token_expiry
    tok = json.loads(base64.b64decode(md["token"]))
    assert tok["secret"] == md["secret"] and tok["client_name"] == "laptop"
    assert [o["id"] for o in token_ops(lxmd)] == [op["id"]]

    # Redeemed: the operation ends (Success) and is no longer a pending token.
    status, body = redeem(port, tmp, md["token"], "laptop")
    assert status == 200, body
    done = assert_sync(lxmd.api("GET", "/1.0/operations/%s" % op["id"]))
    assert done["status"] == "Success", done
    assert token_ops(lxmd) == []
    assert trusted_names(lxmd) == ["laptop"]


def test_list_and_revoke_tokens(lxmd, https):
    port, tmp = https
    t1 = make_token(lxmd, "alpha")
    t2 = make_token(lxmd, "beta")
    rows = json.loads(lxmd.cli("config", "trust", "list-tokens", "--format", "json").stdout)
    assert sorted((x["name"], x["token"]) for x in rows) == [("alpha", t1), ("beta", t2)], rows
    assert all(x["expires_at"].startswith("0001-01-01") for x in rows), rows
    table = lxmd.cli("config", "trust", "list-tokens").stdout
    assert "NAME" in table and "EXPIRES AT" in table and t1 in table and "never" in table, table
    csv = lxmd.cli("config", "trust", "list-tokens", "--format", "csv").stdout
    assert "alpha,%s,never" % t1 in csv, csv

    lxmd.cli("config", "trust", "revoke-token", "alpha")
    rows = json.loads(lxmd.cli("config", "trust", "list-tokens", "-f", "json").stdout)
    assert [x["name"] for x in rows] == ["beta"], rows
    # The revoked token no longer works; the other one still does.
    status, body = redeem(port, tmp, t1, "alpha")
    assert status == 403 and "unknown, revoked or already used" in body["error"], body
    status, body = redeem(port, tmp, t2, "beta")
    assert status == 200, body
    assert trusted_names(lxmd) == ["beta"]
    assert lxmd.cli("config", "trust", "list-tokens", "-f", "json").stdout.strip() == "[]"

    p = lxmd.cli("config", "trust", "revoke-token", "nobody", check=False)
    assert p.returncode != 0 and "no pending token for 'nobody'" in p.stderr, p.stderr


def test_cancel_through_operations_api(lxmd, https):
    """lxc config trust revoke-token is DELETE /1.0/operations/<id>."""
    port, tmp = https
    r = lxmd.api("POST", "/1.0/certificates", {"token": True, "name": "gone"})
    op = r.json["metadata"]
    assert_sync(lxmd.api("DELETE", "/1.0/operations/%s" % op["id"]))
    assert assert_sync(lxmd.api("GET", "/1.0/operations/%s" % op["id"]))["status"] == \
        "Cancelled"
    status, body = redeem(port, tmp, op["metadata"]["token"], "gone")
    assert status == 403, body
    assert trusted_names(lxmd) == []


def test_expiry(lxmd, https):
    port, tmp = https
    r = lxmd.api("PATCH", "/1.0", {"config": {"core.remote_token_expiry": "soon"}})
    assert_error_envelope(r, 400)
    assert "core.remote_token_expiry" in r.json["error"] and "'soon'" in r.json["error"], r.json
    assert_sync(lxmd.api("PATCH", "/1.0", {"config": {"core.remote_token_expiry": "2S"}}))
    assert assert_sync(lxmd.api("GET", "/1.0"))["config"]["core.remote_token_expiry"] == "2S"

    before = time.time()
    r = lxmd.api("POST", "/1.0/certificates", {"token": True, "name": "late"})
    op = r.json["metadata"]
    when = op["metadata"]["expiresAt"]
    expires = time.mktime(time.strptime(when, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert before + 1 <= expires <= before + 3.5, (before, when)
    rows = json.loads(lxmd.cli("config", "trust", "list-tokens", "-f", "json").stdout)
    assert [(x["name"], x["expires_at"]) for x in rows] == [("late", when)], rows
    tok = json.loads(base64.b64decode(op["metadata"]["token"]))
    assert tok["expires_at"] == when

    # Past its expiry the token is gone: its operation has ended, it is not listed, and
    # redeeming it says it expired, and when.
    wait_for(lambda: assert_sync(lxmd.api("GET", "/1.0/operations/%s" % op["id"]))["status"]
             != "Running", timeout=6, what="the token's operation to end")
    assert time.time() >= expires
    assert token_ops(lxmd) == []
    assert lxmd.cli("config", "trust", "list-tokens", "-f", "json").stdout.strip() == "[]"
    status, body = redeem(port, tmp, op["metadata"]["token"], "late")
    assert status == 403, body
    assert body["error"] == "add certificate: token for 'late' expired at %s" % when, body
    assert trusted_names(lxmd) == []

    # Unset: tokens never expire again; one made now works.
    assert_sync(lxmd.api("PATCH", "/1.0", {"config": {"core.remote_token_expiry": ""}}))
    t = make_token(lxmd, "ontime")
    status, body = redeem(port, tmp, t, "ontime")
    assert status == 200, body


def test_tokens_do_not_outlive_lxmd(lxmd, https):
    port, tmp = https
    t = make_token(lxmd, "before-restart")
    start = time.monotonic()
    lxmd.restart()
    # A pending token does not hold lxmd's shutdown up (it waits for running operations).
    assert time.monotonic() - start < 8
    assert token_ops(lxmd) == []
    status, body = redeem(port, tmp, t, "before-restart")
    assert status == 403, body
    assert trusted_names(lxmd) == []


# ------------------------------------------------------------ revocation closes websockets

def tls_ws(port, cert, path):
    """A websocket over TLS with the client certificate (python3-websocket)."""
    import websocket
    ws = websocket.WebSocket(sslopt={"certfile": cert[0], "keyfile": cert[1],
                                     "cert_reqs": ssl.CERT_NONE, "check_hostname": False})
    ws.connect("wss://127.0.0.1:%d%s" % (port, path), timeout=10)
    return ws


def closed_within(ws, seconds):
    """Whether the server closes ws within seconds (a close frame or the connection ends)."""
    import websocket
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ws.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            opcode, _ = ws.recv_data(control_frame=True)
        except websocket.WebSocketTimeoutException:
            return False
        except (websocket.WebSocketConnectionClosedException, ConnectionError, ssl.SSLError,
                OSError):
            return True
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return True
    return False


def test_removal_closes_open_websockets(lxmd, https, launched):
    port, tmp = https
    name = launched()
    cert = make_cert(tmp, "remote")
    assert_sync(lxmd.api("POST", "/1.0/certificates", {"certificate": cert[2], "name": "remote"}))
    other = make_cert(tmp, "other")
    assert_sync(lxmd.api("POST", "/1.0/certificates", {"certificate": other[2], "name": "other"}))

    events = tls_ws(port, cert, "/1.0/events")
    bystander = tls_ws(port, other, "/1.0/events")
    c = Client(port, cert)
    status, body = c.req("POST", "/1.0/instances/%s/exec" % name,
                         {"command": ["sleep", "300"], "wait-for-websocket": True,
                          "interactive": True})
    assert status == 202, body
    op = body["metadata"]
    fds = op["metadata"]["fds"]
    data = tls_ws(port, cert, "/1.0/operations/%s/websocket?secret=%s" % (op["id"], fds["0"]))
    control = tls_ws(port, cert, "/1.0/operations/%s/websocket?secret=%s"
                     % (op["id"], fds["control"]))
    # Open and quiet before the removal.
    assert not closed_within(events, 0.3) and not closed_within(data, 0.3)

    start = time.monotonic()
    lxmd.cli("config", "trust", "remove", cert[3])
    assert closed_within(events, 2), "the events websocket stayed open"
    assert closed_within(data, 2), "the exec websocket stayed open"
    assert closed_within(control, 2), "the exec control websocket stayed open"
    assert time.monotonic() - start < 3
    # The next request on the old keep-alive connection is refused too.
    status, body = c.req("GET", "/1.0/instances")
    assert status == 403, body
    # Another client's websocket is untouched, and lxmd is healthy.
    assert not closed_within(bystander, 0.5)
    assert lxmd.api("POST", "/1.0/profiles", {"name": "after-revoke"}).status in (200, 201)
    assert_sync(lxmd.api("DELETE", "/1.0/profiles/after-revoke"))
    # The exec session ends with its websockets (no sleep left in the container).
    wait_for(lambda: assert_sync(lxmd.api("GET", "/1.0/operations/%s" % op["id"]))["status"]
             != "Running", timeout=10, what="the exec operation to end")
    for ws in (events, data, control, bystander):
        ws.shutdown()
    c.close()


def test_read_only_closes_open_websockets(lxmd, https):
    port, tmp = https
    cert = make_cert(tmp, "ro")
    assert_sync(lxmd.api("POST", "/1.0/certificates", {"certificate": cert[2], "name": "ro"}))
    events = tls_ws(port, cert, "/1.0/events")
    assert not closed_within(events, 0.3)
    assert_sync(lxmd.api("PATCH", "/1.0/certificates/%s" % cert[3], {"read_only": True}))
    assert closed_within(events, 2), "the events websocket stayed open"
    events.shutdown()
    # Read-only still reads: the client may open a new events stream.
    again = tls_ws(port, cert, "/1.0/events")
    assert not closed_within(again, 0.3)
    again.shutdown()
