"""Instance config through PUT/PATCH and `lxm config`: validation before saving, live limits on a
running container, lxmd-owned keys (image.*, volatile.*), ETags."""

import os

from lxmtest import assert_error_envelope, assert_sync, cgroup_dirs, unique

import pytest


@pytest.fixture
def running(lxmd):
    name = unique("cfg")
    lxmd.cli("launch", "busybox", name)
    yield name
    lxmd.cli("delete", "-f", name, check=False)
    assert cgroup_dirs(name) == []


def memory_limit_files(name):
    out = []
    for d in cgroup_dirs(name):
        for f in ("memory.limit_in_bytes", "memory.max"):
            p = os.path.join(d, f)
            if os.path.exists(p):
                out.append(p)
    return out


def read(p):
    with open(p) as f:
        return f.read().strip()


def test_image_properties_recorded(lxmd, running):
    cfg = assert_sync(lxmd.api("GET", "/1.0/instances/" + running))["config"]
    assert cfg["image.os"] == "busybox" and cfg["image.init"] == "busybox", cfg
    assert lxmd.cli("config", "get", running, "image.os").stdout.strip() == "busybox"


def test_limit_applies_live(lxmd, running):
    files = memory_limit_files(running)
    assert files
    lxmd.cli("config", "set", running, "limits.memory=96MiB")
    assert all(read(p) == str(96 << 20) for p in files), [read(p) for p in files]
    assert lxmd.cli("config", "get", running, "limits.memory").stdout.strip() == "96MiB"
    lxmd.cli("config", "unset", running, "limits.memory")
    assert all(int(read(p)) > (1 << 40) or read(p) == "max" for p in files)
    assert lxmd.cli("config", "get", running, "limits.memory").stdout.strip() == ""


def test_invalid_value_refused_and_nothing_lost(lxmd, running):
    lxmd.cli("config", "set", running, "limits.processes=40")
    r = lxmd.cli("config", "set", running, "limits.processes=many", check=False)
    assert r.returncode == 1 and "limits.processes" in r.stderr, r.stderr
    assert lxmd.cli("config", "get", running, "limits.processes").stdout.strip() == "40"
    r = lxmd.cli("config", "set", running, "limitz.cpu=1", check=False)
    assert r.returncode == 1 and "limitz.cpu" in r.stderr, r.stderr


def test_lxmd_owned_keys_refused(lxmd, running):
    r = lxmd.cli("config", "set", running, "image.os=debian", check=False)
    assert r.returncode == 1 and "image.os" in r.stderr and "set by lxmd" in r.stderr, r.stderr
    assert lxmd.cli("config", "get", running, "image.os").stdout.strip() == "busybox"
    # A client that echoes them back unchanged (lxc, pylxd) is fine.
    inst = assert_sync(lxmd.api("GET", "/1.0/instances/" + running))
    body = {k: inst[k] for k in ("architecture", "config", "devices", "ephemeral", "profiles",
                                 "description")}
    body["config"]["user.note"] = "hello"
    r = lxmd.api("PUT", "/1.0/instances/" + running, body)
    assert r.status == 202, r.json
    cfg = assert_sync(lxmd.api("GET", "/1.0/instances/" + running))["config"]
    assert cfg["user.note"] == "hello" and cfg["image.os"] == "busybox"


def test_etag_and_patch(lxmd, running):
    r = lxmd.api("GET", "/1.0/instances/" + running)
    etag = r.headers.get("ETag")
    assert etag, dict(r.headers)
    r = lxmd.api("PATCH", "/1.0/instances/" + running, {"config": {"user.a": "1"}},
                 headers={"If-Match": etag})
    assert r.status == 202, r.json
    # The same ETag is stale now.
    r = lxmd.api("PATCH", "/1.0/instances/" + running, {"config": {"user.b": "2"}},
                 headers={"If-Match": etag})
    assert_error_envelope(r, 412)
    cfg = assert_sync(lxmd.api("GET", "/1.0/instances/" + running))["config"]
    assert cfg.get("user.a") == "1" and "user.b" not in cfg


def test_config_show_expanded(lxmd, running):
    lxmd.cli("profile", "set", "default", "user.from-profile=yes")
    try:
        plain = lxmd.cli("config", "show", running).stdout
        expanded = lxmd.cli("config", "show", running, "--expanded").stdout
        assert "user.from-profile" not in plain, plain
        assert ('user.from-profile: "yes"' in expanded
                or "user.from-profile: 'yes'" in expanded), expanded
    finally:
        lxmd.cli("profile", "unset", "default", "user.from-profile")
