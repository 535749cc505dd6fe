"""LXD's Python client (python3-pylxd 2.2.10), unmodified, against a private lxmd over its unix
socket: the container life cycle, exec, files, snapshots and the read side of images, profiles
and storage pools; and over HTTPS (core.https_address) with a client certificate, trusted by a
join token (client.authenticate) or by `lxm config trust add FILE`.

pylxd 2.2.10 predates `client.instances` (it has `client.containers` only, on /1.0/containers);
lxc covers /1.0/instances (test_lxc.py).
"""

import hashlib
import os
import shutil
import ssl
import tempfile
import warnings

import pytest

import lxmtest
from conftest import pylxd_endpoint
from nettest import free_port

pylxd = pytest.importorskip(
    "pylxd", reason="LXD's Python client is not installed: apt-get install python3-pylxd")
from pylxd import exceptions  # noqa: E402


@pytest.fixture
def client(lxmd, busybox_image):
    with warnings.catch_warnings():
        # LXD 5.0 sends fields pylxd 2.2.10 has no attribute for (an instance's "type" and
        # "project", an operation's "location"); pylxd warns and goes on, as it does with LXD.
        warnings.simplefilter("ignore", UserWarning)
        yield pylxd.Client(endpoint=pylxd_endpoint(lxmd))


def test_server_and_collections(client, busybox_image):
    assert client.host_info["api_version"] == "1.0"
    assert client.has_api_extension("instances"), client.host_info["api_extensions"]
    assert client.host_info["environment"]["storage"] == "dir", client.host_info["environment"]
    images = client.images.all()
    assert [i.fingerprint for i in images] == [busybox_image]
    img = client.images.get_by_alias("busybox")
    assert img.fingerprint == busybox_image and img.properties["os"] == "busybox", img.properties
    assert [p.name for p in client.profiles.all()] == ["default"]
    prof = client.profiles.get("default")
    assert prof.devices["root"] == {"path": "/", "pool": "default", "type": "disk"}, prof.devices
    pools = client.storage_pools.all()
    assert [(p.name, p.driver) for p in pools] == [("default", "dir")]
    assert client.networks.all() == []


def test_container_life_cycle(client, names):
    name = names("py")
    assert client.containers.all() == []
    ct = client.containers.create({"name": name, "source": {"type": "image", "alias": "busybox"}},
                                  wait=True)
    assert ct.name == name and ct.status == "Stopped", ct.status
    assert [c.name for c in client.containers.all()] == [name]
    assert client.containers.exists(name) and not client.containers.exists(name + "x")
    with pytest.raises(exceptions.NotFound):
        client.containers.get(name + "x")

    ct.start(wait=True)
    ct.sync()
    assert ct.status == "Running" and ct.status_code == 103, ct.status
    state = ct.state()
    assert state.status == "Running" and state.pid > 0, state.status

    r = ct.execute(["sh", "-c", "echo out; echo err >&2; exit 4"])
    assert (r.exit_code, r.stdout, r.stderr) == (4, "out\n", "err\n"), r
    r = ct.execute(["sh", "-c", 'echo "$FOO"'], environment={"FOO": "bar"})
    assert (r.exit_code, r.stdout) == (0, "bar\n"), r
    r = ct.execute(["cat"], stdin_payload="from-stdin\n")
    assert r.stdout == "from-stdin\n", r

    data = b"\x00binary\xff" * 1000
    ct.files.put("/root/blob", data)
    assert ct.files.get("/root/blob") == data
    assert ct.execute(["wc", "-c", "/root/blob"]).stdout.split()[0] == str(len(data))
    with pytest.raises(exceptions.NotFound):
        ct.files.get("/no/such/file")
    ct.files.delete("/root/blob")
    assert ct.execute(["test", "-e", "/root/blob"]).exit_code == 1

    ct.config["user.note"] = "set by pylxd"
    ct.save(wait=True)
    assert client.containers.get(name).config["user.note"] == "set by pylxd"

    snap = ct.snapshots.create("snap0", wait=True)
    assert snap.name == "snap0"
    assert [s.name for s in ct.snapshots.all()] == ["snap0"]
    assert ct.snapshots.get("snap0").name == "snap0"

    ct.stop(wait=True)
    ct.sync()
    assert ct.status == "Stopped", ct.status
    got = client.containers.get(name)
    assert got.status == "Stopped" and got.profiles == ["default"], got.status

    ct.delete(wait=True)
    assert not client.containers.exists(name)
    assert client.containers.all() == []


# ---------------------------------------------------------------- over HTTPS

@pytest.fixture
def https_endpoint(lxmd, busybox_image, monkeypatch):
    """core.https_address on a free loopback port; the endpoint URL, the server certificate
    (to verify it by) and a directory for client certificates."""
    port = free_port()
    lxmtest.assert_sync(lxmd.api("PATCH", "/1.0", {"config": {
        "core.https_address": "127.0.0.1:%d" % port}}))
    tmp = tempfile.mkdtemp(prefix="lxm-pylxd-")
    # requests lets these override a session's verify (the host's CA bundle would then judge
    # lxmd's self-signed certificate).
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    yield "https://127.0.0.1:%d" % port, os.path.join(lxmd.root, "server.crt"), tmp
    shutil.rmtree(tmp)


def https_client(endpoint, server_crt, cert):
    """pylxd verifying the server by its own (self-signed) certificate."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return pylxd.Client(endpoint=endpoint, cert=cert, verify=server_crt)


def test_https_untrusted_then_token(lxmd, https_endpoint, names):
    """pylxd with a client certificate over HTTPS: untrusted until it authenticates with a join
    token (pylxd 2.2.10 sends it as the trust password, as LXD 5.0 accepts), then the container
    life cycle as over the unix socket."""
    endpoint, server_crt, tmp = https_endpoint
    cert = lxmtest.make_cert(tmp, "pylxd")[:2]
    client = https_client(endpoint, server_crt, cert)
    assert client.trusted is False
    assert client.host_info["auth"] == "untrusted"
    with pytest.raises(exceptions.LXDAPIException) as e:
        client.containers.all()
    assert e.value.response.status_code == 403

    token = lxmd.cli("config", "trust", "add", "--name", "pylxd", "--quiet").stdout.strip()
    client.authenticate(token)
    assert client.trusted is True
    fps = [c.fingerprint for c in client.certificates.all()]
    assert len(fps) == 1
    assert client.certificates.get(fps[0]).name == "pylxd"
    # The token is spent: another untrusted client cannot use it.
    other = https_client(endpoint, server_crt, lxmtest.make_cert(tmp, "other")[:2])
    with pytest.raises(exceptions.LXDAPIException):
        other.authenticate(token)
    assert other.trusted is False

    name = names("pyhttps")
    assert client.containers.all() == []
    ct = client.containers.create({"name": name, "source": {"type": "image", "alias": "busybox"}},
                                  wait=True)
    assert [c.name for c in client.containers.all()] == [name]
    ct.start(wait=True)
    ct.sync()
    assert ct.status == "Running", ct.status
    # exec's websockets go over wss:// too (ws4py opens them without the client certificate:
    # the operation's secrets authorise them, as in LXD).
    r = ct.execute(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (r.exit_code, r.stdout, r.stderr) == (3, "out\n", "err\n"), r
    data = b"over https\x00\xff" * 500
    ct.files.put("/root/blob", data)
    assert ct.files.get("/root/blob") == data
    snap = ct.snapshots.create("snap0", wait=True)
    assert [s.name for s in ct.snapshots.all()] == [snap.name] == ["snap0"]
    ct.stop(wait=True)
    ct.sync()
    assert ct.status == "Stopped", ct.status
    ct.delete(wait=True)
    assert client.containers.all() == []


def test_https_trusted_by_file(lxmd, https_endpoint):
    """A certificate added with `lxm config trust add FILE` is trusted at once; removed, it is
    refused again."""
    endpoint, server_crt, tmp = https_endpoint
    cert = lxmtest.make_cert(tmp, "byfile")[:2]
    lxmd.cli("config", "trust", "add", cert[0])
    client = https_client(endpoint, server_crt, cert)
    assert client.trusted is True
    assert client.containers.all() == []
    with open(cert[0]) as f:
        fp = hashlib.sha256(ssl.PEM_cert_to_DER_cert(f.read())).hexdigest()
    [c] = client.certificates.all()
    assert (c.name, c.fingerprint) == ("byfile", fp)
    lxmd.cli("config", "trust", "remove", c.fingerprint)
    with pytest.raises(exceptions.LXDAPIException) as e:
        client.containers.all()
    assert e.value.response.status_code == 403
