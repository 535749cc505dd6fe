"""The HTTP server and the /1.0 document: envelopes, errors, limits, keep-alive, chunked bodies."""

import json
import socket
import subprocess
import threading

import pytest

from lxmtest import (assert_error_envelope, assert_sync, assert_timestamps, chunked, http_request,
                     unique)


def test_server_document(lxmd):
    r = lxmd.api("GET", "/1.0")
    assert r.headers.get("Content-Type", "").startswith("application/json"), dict(r.headers)
    body = r.json
    assert set(body) >= {"type", "status", "status_code", "operation", "error_code", "error",
                         "metadata"}, body
    assert body["operation"] == ""
    md = assert_sync(r)
    assert md["api_version"] == "1.0"
    assert isinstance(md["api_extensions"], list)
    assert all(isinstance(e, str) and e for e in md["api_extensions"]), md["api_extensions"]
    assert md["auth"] == "trusted"
    env = md["environment"]
    assert env["server"] == "lxmd"
    assert env["server_pid"] == lxmd.pid
    assert isinstance(env["server_version"], str) and env["server_version"]
    assert isinstance(env["server_name"], str) and env["server_name"]
    assert_timestamps(md)


def test_curl_unix_socket(lxmd):
    p = subprocess.run(["curl", "-sS", "--max-time", "10", "--unix-socket", lxmd.socket,
                        "-w", "\n%{http_code}", "http://localhost/1.0"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    body, _, code = p.stdout.rpartition("\n")
    assert code == "200"
    assert json.loads(body)["metadata"]["api_version"] == "1.0"


@pytest.mark.parametrize("path", ["/1.0/lxm-it-nothing", "/2.0", "/1.0/instances/lxm-it-missing",
                                  "/1.0/profiles/lxm-it-missing"])
def test_unknown_path_404(lxmd, path):
    r = lxmd.api("GET", path)
    assert r.headers.get("Content-Type", "").startswith("application/json"), dict(r.headers)
    assert_error_envelope(r, 404)


@pytest.mark.parametrize("method,path", [("DELETE", "/1.0"), ("PUT", "/1.0/operations"),
                                         ("DELETE", "/1.0/profiles"), ("PATCH", "/1.0/instances")])
def test_wrong_method_405(lxmd, method, path):
    assert_error_envelope(lxmd.api(method, path, body=b"{}" if method != "DELETE" else None), 405)


@pytest.mark.parametrize("body", [b'{"name": ', b'{"name": "x",}', b"\xff\xfe", b"[1, 2"])
def test_malformed_json_400(lxmd, body):
    assert_error_envelope(lxmd.api("POST", "/1.0/profiles", body,
                                   {"Content-Type": "application/json"}), 400)
    assert_error_envelope(lxmd.api("POST", "/1.0/instances", body,
                                   {"Content-Type": "application/json"}), 400)
    # Nothing was created from it.
    assert lxmd.instance_names() == []
    assert assert_sync(lxmd.api("GET", "/1.0/profiles")) == ["/1.0/profiles/default"]


def test_json_of_wrong_shape_400(lxmd):
    assert_error_envelope(lxmd.api("POST", "/1.0/profiles", []), 400)
    assert_error_envelope(lxmd.api("POST", "/1.0/profiles", {"name": 42}), 400)
    assert_error_envelope(lxmd.api("POST", "/1.0/instances", "\"c1\""), 400)


@pytest.mark.parametrize("data", [
    b"THIS IS NOT HTTP\r\n\r\n",
    b"GET /1.0 HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    b"GET /1.0 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\nxx\r\n",
], ids=["garbage", "bad-content-length", "bad-chunk"])
def test_malformed_http_400_and_still_serving(lxmd, data):
    with lxmd.conn() as c:
        c.send(data)
        r = c.read_response()
        assert_error_envelope(r, 400)
        assert c.is_closed(), "lxmd kept a connection open after a malformed request"
    assert_sync(lxmd.api("GET", "/1.0"))


def test_oversized_header_431(lxmd):
    data = http_request("GET", "/1.0", headers={"X-Lxm-It-Big": "a" * (64 * 1024)})
    with lxmd.conn() as c:
        c.send(data)
        assert_error_envelope(c.read_response(), 431)
    assert_sync(lxmd.api("GET", "/1.0"))


def test_many_headers_431(lxmd):
    hdrs = {"X-Lxm-It-%d" % i: "v" for i in range(1000)}
    with lxmd.conn() as c:
        c.send(http_request("GET", "/1.0", headers=hdrs))
        assert_error_envelope(c.read_response(), 431)
    assert_sync(lxmd.api("GET", "/1.0"))


def test_oversized_body_413(lxmd):
    name = unique("big")
    body = json.dumps({"name": name, "description": "x" * (9 * 1024 * 1024)}).encode()
    with lxmd.conn(timeout=30) as c:
        # lxmd may answer before reading the whole body: write from another thread.
        t = threading.Thread(target=c.send, args=(http_request("POST", "/1.0/profiles", body),))
        t.start()
        try:
            r = c.read_response()
        finally:
            t.join(30)
            if t.is_alive():
                c.sock.shutdown(socket.SHUT_RDWR)
                t.join(5)
        assert_error_envelope(r, 413)
    assert_error_envelope(lxmd.api("GET", "/1.0/profiles/" + name), 404)
    assert_sync(lxmd.api("GET", "/1.0"))


def test_chunked_json_body(lxmd):
    name = unique("chunked")
    body = json.dumps({"name": name, "description": "sent in chunks", "config": {}}).encode()
    req = (b"POST /1.0/profiles HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n" + chunked(body, [1, 7, 3, 20]))
    with lxmd.conn() as c:
        # Split the write too, so that the body arrives in several reads.
        c.send(req[:50])
        c.send(req[50:])
        r = c.read_response()
    assert r.status in (200, 201), r
    assert r.json["type"] == "sync", r.json
    got = assert_sync(lxmd.api("GET", "/1.0/profiles/" + name))
    assert got["name"] == name
    assert got["description"] == "sent in chunks"


def test_keep_alive_three_requests(lxmd):
    with lxmd.conn() as c:
        for path in ("/1.0", "/1.0/profiles", "/1.0/instances"):
            c.send(http_request("GET", path))
            r = c.read_response()
            assert r.status == 200, (path, r)
            assert r.headers.get("Content-Length") is not None, dict(r.headers)
            assert r.json["type"] == "sync"
            assert not c.is_closed(0.05), "lxmd closed a keep-alive connection after " + path
        assert r.json["metadata"] == []


def test_pipelined_requests(lxmd):
    with lxmd.conn() as c:
        c.send(http_request("GET", "/1.0") + http_request("GET", "/1.0/profiles"))
        first = c.read_response()
        second = c.read_response()
    assert assert_sync(first)["api_version"] == "1.0"
    assert "/1.0/profiles/default" in assert_sync(second)


def test_pipelined_post_then_get(lxmd):
    name = unique("pipe")
    with lxmd.conn() as c:
        c.send(http_request("POST", "/1.0/profiles", {"name": name, "description": "p"})
               + http_request("GET", "/1.0/profiles/" + name))
        first = c.read_response()
        second = c.read_response()
    assert first.status in (200, 201), first
    assert assert_sync(second)["name"] == name


@pytest.mark.parametrize("version,headers", [("1.0", {}), ("1.1", {"Connection": "close"})],
                         ids=["http1.0", "connection-close"])
def test_connection_closed_after_response(lxmd, version, headers):
    with lxmd.conn() as c:
        c.send(http_request("GET", "/1.0", headers=headers, version=version))
        r = c.read_response()
        assert assert_sync(r)["api_version"] == "1.0"
        assert c.is_closed(), "connection still open"


def test_header_names_case_insensitive(lxmd):
    name = unique("case")
    body = json.dumps({"name": name}).encode()
    req = (b"POST /1.0/profiles HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n"
           b"CONTENT-LENGTH: %d\r\n\r\n%s" % (len(body), body))
    r = lxmd.raw(req)
    assert r.status in (200, 201), r
    assert_sync(lxmd.api("GET", "/1.0/profiles/" + name))


def test_request_arriving_byte_by_byte(lxmd):
    with lxmd.conn() as c:
        for b in http_request("GET", "/1.0/profiles"):
            c.send(bytes([b]))
        assert assert_sync(c.read_response()) == ["/1.0/profiles/default"]


def test_client_half_close_still_answered(lxmd):
    with lxmd.conn() as c:
        c.send(http_request("GET", "/1.0", headers={"Connection": "close"}))
        c.sock.shutdown(socket.SHUT_WR)
        assert assert_sync(c.read_response())["api_version"] == "1.0"


def test_many_concurrent_connections(lxmd):
    conns = [lxmd.conn() for _ in range(64)]
    try:
        # All connected before any request: an idle connection must not hold the others up.
        for i, c in enumerate(conns):
            c.send(http_request("GET", "/1.0" if i % 2 else "/1.0/profiles"))
        for i, c in enumerate(conns):
            r = c.read_response()
            assert r.status == 200, (i, r)
    finally:
        for c in conns:
            c.close()
    assert_sync(lxmd.api("GET", "/1.0"))


def _rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for pid %d" % pid)


def test_large_body_is_streamed_not_buffered(lxmd):
    """64 MiB of chunked body to a path with no handler: lxmd reads it through without holding it
    (its RSS stays flat), answers 404, and the connection goes on serving."""
    pid = lxmd.proc.pid
    before = _rss_kib(pid)
    piece = b"x" * (1024 * 1024)
    with lxmd.conn(timeout=60) as c:
        c.send(b"POST /1.0/no-such-thing HTTP/1.1\r\nHost: localhost\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n")
        for _ in range(64):
            c.send(b"100000\r\n" + piece + b"\r\n")
        c.send(b"0\r\n\r\n")
        assert_error_envelope(c.read_response(), 404)
        grown = _rss_kib(pid) - before
        assert grown < 16 * 1024, f"lxmd RSS grew by {grown} KiB while discarding a 64 MiB body"
        c.send(http_request("GET", "/1.0"))
        assert assert_sync(c.read_response())["api_version"] == "1.0"
