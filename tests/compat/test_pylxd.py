"""LXD's Python client (python3-pylxd 2.2.10), unmodified, against a private lxmd over its unix
socket: the container life cycle, exec, files, snapshots and the read side of images, profiles
and storage pools.

pylxd 2.2.10 predates `client.instances` (it has `client.containers` only, on /1.0/containers);
lxc covers /1.0/instances (test_lxc.py).
"""

import warnings

import pytest

from conftest import pylxd_endpoint

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
