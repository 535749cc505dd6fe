"""The config key table through the API and the CLI: unknown keys refused with the closest valid
key, invalid values naming key and value, LXD keys lxm lacks refused as such, read-only keys
(image.*, volatile.*) refused on change but accepted when sent back unchanged, profiles refusing
instance-only keys, and valid keys stored and read back."""

from lxmtest import assert_async, assert_error_envelope, assert_sync, unique

import pytest

SUGGESTION = "unknown config key 'limits.memroy' (did you mean 'limits.memory'?)"


@pytest.fixture
def inst(lxmd):
    """A stopped busybox instance (it has image.* and volatile.* keys from its creation)."""
    name = unique("keys")
    lxmd.cli("init", "busybox", name, timeout=120)
    yield name
    lxmd.cli("delete", "-f", name, check=False)


@pytest.fixture
def profile(lxmd):
    name = unique("kp")
    lxmd.cli("profile", "create", name)
    yield name
    lxmd.cli("profile", "delete", name, check=False)


def get(lxmd, name):
    return assert_sync(lxmd.api("GET", "/1.0/instances/" + name))


def patch(lxmd, name, config):
    return lxmd.api("PATCH", "/1.0/instances/" + name, {"config": config})


def put_back(lxmd, name, inst):
    body = {k: inst[k] for k in ("architecture", "config", "devices", "ephemeral", "profiles",
                                 "description")}
    return lxmd.api("PUT", "/1.0/instances/" + name, body)


def ok_async(lxmd, r):
    done = lxmd.wait_op(assert_async(r)["id"])
    assert done["status"] == "Success", done


def test_unknown_key_suggests_the_closest(lxmd, inst, profile):
    msg = assert_error_envelope(patch(lxmd, inst, {"limits.memroy": "1GiB"}), 400)
    assert SUGGESTION in msg, msg
    r = lxmd.cli("config", "set", inst, "limits.memroy=1GiB", check=False)
    assert r.returncode == 1 and SUGGESTION in r.stderr, r.stderr
    r = lxmd.cli("profile", "set", profile, "limits.memroy", "1GiB", check=False)
    assert r.returncode == 1 and SUGGESTION in r.stderr, r.stderr
    msg = assert_error_envelope(
        lxmd.api("PATCH", "/1.0/profiles/" + profile, {"config": {"enviroment.PATH": "/bin"}}),
        400)
    assert "did you mean 'environment.PATH'?" in msg, msg
    # Nothing was stored on the way.
    assert "limits.memroy" not in get(lxmd, inst)["config"]
    p = assert_sync(lxmd.api("GET", "/1.0/profiles/" + profile))
    assert p["config"] == {}, p


def test_cli_checks_keys_before_any_request(lxmd):
    # With no daemon behind the socket, only a local check can give this answer.
    r = lxmd.cli("profile", "set", "default", "limits.memroy=1GiB", check=False,
                 env={"LXM_SOCKET": "/nonexistent/lxm.socket"})
    assert r.returncode == 1 and SUGGESTION in r.stderr, r.stderr


def test_invalid_value_names_key_and_value(lxmd, inst, profile):
    want = "config key 'limits.cpu.priority': invalid value '11'"
    msg = assert_error_envelope(patch(lxmd, inst, {"limits.cpu.priority": "11"}), 400)
    assert want in msg and "0 to 10" in msg, msg
    r = lxmd.cli("config", "set", inst, "limits.cpu.priority=11", check=False)
    assert r.returncode == 1 and want in r.stderr, r.stderr
    r = lxmd.cli("profile", "set", profile, "security.nesting=yes", check=False)
    assert (r.returncode == 1 and "config key 'security.nesting': invalid value 'yes'" in r.stderr
            and "true or false" in r.stderr), r.stderr
    # A snapshots.* value is checked by lxmd's scheduler, through the same path.
    msg = assert_error_envelope(patch(lxmd, inst, {"snapshots.schedule": "every tuesday"}), 400)
    assert "snapshots.schedule" in msg, msg


def test_unsupported_lxd_key_refused(lxmd, inst):
    msg = assert_error_envelope(patch(lxmd, inst, {"limits.memory.hugepages": "true"}), 400)
    assert "config key 'limits.memory.hugepages': lxm does not support it" in msg, msg
    r = lxmd.cli("config", "set", inst, "security.devlxd=true", check=False)
    assert r.returncode == 1 and "lxm does not support" in r.stderr, r.stderr
    assert "limits.memory.hugepages" not in get(lxmd, inst)["config"]


def test_read_only_keys(lxmd, inst):
    before = get(lxmd, inst)
    assert before["config"]["image.os"] == "busybox", before["config"]
    msg = assert_error_envelope(patch(lxmd, inst, {"image.os": "debian"}), 400)
    assert "config key 'image.os' is read-only" in msg, msg
    r = lxmd.cli("config", "set", inst, "image.os=debian", check=False)
    assert r.returncode == 1 and "config key 'image.os' is read-only" in r.stderr, r.stderr
    msg = assert_error_envelope(patch(lxmd, inst, {"volatile.base_image": "00"}), 400)
    assert "config key 'volatile.base_image' is read-only" in msg, msg

    # lxc config edit: everything read is sent back, image.* and volatile.* included.
    inst_now = get(lxmd, inst)
    inst_now["config"]["user.note"] = "edited"
    ok_async(lxmd, put_back(lxmd, inst, inst_now))
    after = get(lxmd, inst)["config"]
    assert after["user.note"] == "edited", after
    for k, v in before["config"].items():
        if k.startswith(("image.", "volatile.")):
            assert after.get(k) == v, (k, after)

    # A PUT leaving them out keeps them too.
    body = {"config": {"limits.memory": "64MiB"}, "devices": {},
            "profiles": get(lxmd, inst)["profiles"]}
    ok_async(lxmd, lxmd.api("PUT", "/1.0/instances/" + inst, body))
    after = get(lxmd, inst)["config"]
    assert after["image.os"] == "busybox" and after["limits.memory"] == "64MiB", after


def test_nic_mac_pinned_through_volatile(lxmd, inst):
    msg = assert_error_envelope(patch(lxmd, inst, {"volatile.eth0.hwaddr": "01:00:5e:00:00:01"}),
                                400)
    assert "config key 'volatile.eth0.hwaddr': invalid value '01:00:5e:00:00:01'" in msg, msg
    ok_async(lxmd, patch(lxmd, inst, {"volatile.eth0.hwaddr": "00:16:3e:12:34:56"}))
    assert get(lxmd, inst)["config"]["volatile.eth0.hwaddr"] == "00:16:3e:12:34:56"
    msg = assert_error_envelope(patch(lxmd, inst, {"volatile.eth0.host_name": "veth0"}), 400)
    assert "read-only" in msg, msg


def test_profiles_refuse_instance_keys(lxmd, profile):
    for key, value in (("image.os", "debian"), ("volatile.eth0.hwaddr", "00:16:3e:12:34:56")):
        msg = assert_error_envelope(
            lxmd.api("PUT", "/1.0/profiles/" + profile,
                     {"config": {key: value}, "description": "", "devices": {}}), 400)
        assert "config key '%s' can only be set on an instance" % key in msg, msg
    msg = assert_error_envelope(
        lxmd.api("POST", "/1.0/profiles", {"name": unique("kq"), "config": {"limits.cpux": "1"}}),
        400)
    assert "did you mean 'limits.cpu'?" in msg, msg


def test_valid_keys_read_back(lxmd, inst, profile):
    keys = {"limits.memory": "50%", "limits.cpu.allowance": "25ms/100ms",
            "security.syscalls.deny": "bpf,userfaultfd", "boot.stop.signal": "SIGRTMIN+3",
            "linux.time.offset": "monotonic=3600", "environment.FOO": "bar",
            "user.note": "x y", "security.capabilities.drop": "net_raw"}
    lxmd.cli("config", "set", inst, *["%s=%s" % kv for kv in keys.items()])
    cfg = get(lxmd, inst)["config"]
    for k, v in keys.items():
        assert cfg.get(k) == v, (k, cfg)
        assert lxmd.cli("config", "get", inst, k).stdout.strip() == v
    lxmd.cli("profile", "set", profile, "limits.processes=100", "security.nesting=true")
    p = assert_sync(lxmd.api("GET", "/1.0/profiles/" + profile))
    assert p["config"] == {"limits.processes": "100", "security.nesting": "true"}, p
    # Unset is always possible.
    lxmd.cli("config", "unset", inst, "limits.memory")
    assert "limits.memory" not in get(lxmd, inst)["config"]


def test_create_refuses_bad_config(lxmd):
    name = unique("keysc")
    msg = assert_error_envelope(
        lxmd.api("POST", "/1.0/instances",
                 {"name": name, "source": {"type": "none"},
                  "config": {"security.privilegd": "true"}}), 400)
    assert "did you mean 'security.privileged'?" in msg, msg
    assert_error_envelope(lxmd.api("GET", "/1.0/instances/" + name), 404)
    r = lxmd.cli("init", "busybox", name, "-c", "limits.memory=lots", check=False, timeout=120)
    assert r.returncode == 1 and "config key 'limits.memory': invalid value 'lots'" in r.stderr, \
        r.stderr
    assert_error_envelope(lxmd.api("GET", "/1.0/instances/" + name), 404)
