"""The config, device and profile commands of the CLI, as a user runs them: `lxm config edit`,
`lxm config device ...`, `lxm profile device ...`, `lxm profile copy|add|remove|assign`, profiles
created from YAML on stdin (the example profiles in profiles/*.yaml among them) and the server's
config. Every change is read back through the CLI and through the API."""

import os

import pytest
import yaml

from lxmtest import assert_sync, made_fixture, unique
from nettest import create_network, delete_network

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUSYBOX = "/bin/busybox"


def instance(lxmd, name):
    return assert_sync(lxmd.api("GET", "/1.0/instances/" + name))


def profile(lxmd, name):
    return assert_sync(lxmd.api("GET", "/1.0/profiles/" + name))


def fails(lxmd, *args, input=None):
    """Runs lxm, which must fail with exit status 1; returns its stderr."""
    p = lxmd.cli(*args, check=False, input=input)
    assert p.returncode == 1, "lxm %s: exit %d, stdout %r, stderr %r" % (
        " ".join(args), p.returncode, p.stdout, p.stderr)
    assert p.stderr.startswith("Error: "), p.stderr
    return p.stderr


made = made_fixture()


@pytest.fixture
def empty(lxmd, made):
    """An instance created with --empty (never started): for config changes only."""
    name = unique("c")
    made.append(name)
    lxmd.cli("init", "--empty", name)
    return name


@pytest.fixture
def hostdir(tmp_path):
    d = tmp_path / "shared"
    d.mkdir()
    (d / "hello.txt").write_text("hello from the host\n")
    os.chmod(d, 0o755)
    os.chmod(tmp_path, 0o755)
    return str(d)


needs_busybox = pytest.mark.skipif(not os.access(BUSYBOX, os.X_OK),
                                   reason="busybox-static is not installed")


# ---- config device on an instance ----

def test_config_device_add_set_unset_get_list_show_remove(lxmd, empty, hostdir):
    c = empty
    out = lxmd.cli("config", "device", "add", c, "data", "disk", "source=" + hostdir,
                   "path=/mnt/data").stdout
    assert out == "Device data added to %s\n" % c
    want = {"type": "disk", "source": hostdir, "path": "/mnt/data"}
    assert instance(lxmd, c)["devices"] == {"data": want}
    assert lxmd.cli("config", "device", "list", c).stdout == "data\n"
    assert yaml.safe_load(lxmd.cli("config", "device", "show", c).stdout) == {"data": want}
    assert lxmd.cli("config", "device", "get", c, "data", "source").stdout == hostdir + "\n"

    # Both forms of set: KEY=VALUE... and KEY VALUE.
    lxmd.cli("config", "device", "set", c, "data", "readonly=true")
    lxmd.cli("config", "device", "set", c, "data", "path", "/srv/data")
    dev = instance(lxmd, c)["devices"]["data"]
    assert dev["readonly"] == "true" and dev["path"] == "/srv/data", dev
    assert lxmd.cli("config", "device", "get", c, "data", "path").stdout == "/srv/data\n"
    lxmd.cli("config", "device", "unset", c, "data", "readonly")
    assert "readonly" not in instance(lxmd, c)["devices"]["data"]
    assert lxmd.cli("config", "device", "get", c, "data", "readonly").stdout == "\n"

    # A second device, then both removed in one command.
    lxmd.cli("config", "device", "add", c, "extra", "none")
    assert lxmd.cli("config", "device", "list", c).stdout == "data\nextra\n"
    out = lxmd.cli("config", "device", "remove", c, "data", "extra").stdout
    assert out == "Device data removed from %s\nDevice extra removed from %s\n" % (c, c)
    assert instance(lxmd, c)["devices"] == {}
    assert lxmd.cli("config", "device", "list", c).stdout == ""


@needs_busybox
def test_disk_device_of_a_host_directory_is_seen_inside(lxmd, made, hostdir):
    c = unique("c")
    made.append(c)
    lxmd.cli("launch", "busybox", c, timeout=120)
    lxmd.cli("config", "device", "add", c, "data", "disk", "source=" + hostdir,
             "path=/mnt/data")
    out = lxmd.cli("exec", c, "--", "cat", "/mnt/data/hello.txt").stdout
    assert out == "hello from the host\n"


def test_config_device_errors(lxmd, empty):
    c = empty
    err = fails(lxmd, "config", "device", "list", "nosuch")
    assert "instance 'nosuch'" in err and "not found" in err, err
    err = fails(lxmd, "config", "device", "add", "nosuch", "d", "none")
    assert "instance 'nosuch'" in err, err

    lxmd.cli("config", "device", "add", c, "eth9", "none")
    err = fails(lxmd, "config", "device", "add", c, "eth9", "none")
    assert "device 'eth9' already exists on instance '%s'" % c in err, err

    err = fails(lxmd, "config", "device", "add", c, "d2", "disk", "path")
    assert "invalid config 'path': expected KEY=VALUE" in err, err
    err = fails(lxmd, "config", "device", "set", c, "eth9", "a=1", "oops")
    assert "invalid 'oops'" in err, err

    for args in (("get", c, "nope", "type"), ("set", c, "nope", "k=v"),
                 ("unset", c, "nope", "k"), ("remove", c, "nope")):
        err = fails(lxmd, "config", "device", *args)
        assert "device 'nope' does not exist on instance '%s'" % c in err, (args, err)
    err = fails(lxmd, "config", "device", "unset", c, "eth9", "mtu")
    assert "cannot unset key 'mtu': it is not set" in err, err
    err = fails(lxmd, "config", "device", "add", c, "d3")
    assert "expected NAME DEVICE TYPE" in err, err
    # Nothing of the failed commands reached the instance.
    assert instance(lxmd, c)["devices"] == {"eth9": {"type": "none"}}


def test_profile_device_cannot_be_removed_from_instance_but_masked_or_overridden(
        lxmd, made, hostdir):
    p = unique("p")
    lxmd.cli("profile", "create", p)
    lxmd.cli("profile", "device", "add", p, "data", "disk", "source=" + hostdir,
             "path=/mnt/data")
    c = unique("c")
    made.append(c)
    lxmd.cli("init", "--empty", c, "-p", "default", "-p", p)

    err = fails(lxmd, "config", "device", "remove", c, "data")
    assert "device 'data' of instance '%s' comes from profile '%s'" % (c, p) in err, err
    assert "lxm config device override %s data" % c in err, err
    assert "lxm config device add %s data none" % c in err, err
    err = fails(lxmd, "config", "device", "set", c, "data", "readonly=true")
    assert "comes from profile '%s'" % p in err and "override" in err, err
    # get reads through to the profile's device, as lxc does.
    assert lxmd.cli("config", "device", "get", c, "data", "path").stdout == "/mnt/data\n"

    # override: a copy in the instance, with the change.
    out = lxmd.cli("config", "device", "override", c, "data", "readonly=true").stdout
    assert out == "Device data overridden for %s\n" % c
    inst = instance(lxmd, c)
    assert inst["devices"]["data"] == {"type": "disk", "source": hostdir, "path": "/mnt/data",
                                       "readonly": "true"}, inst
    assert inst["expanded_devices"]["data"]["readonly"] == "true"
    assert profile(lxmd, p)["devices"]["data"].get("readonly") is None
    err = fails(lxmd, "config", "device", "override", c, "data")
    assert "device 'data' already exists on instance '%s'" % c in err, err
    err = fails(lxmd, "config", "device", "override", c, "nope")
    assert "device 'nope' does not exist in the profiles of instance '%s'" % c in err, err

    # Back to the profile's device, then masked by a none device.
    lxmd.cli("config", "device", "remove", c, "data")
    assert instance(lxmd, c)["expanded_devices"]["data"].get("readonly") is None
    lxmd.cli("config", "device", "add", c, "data", "none")
    inst = instance(lxmd, c)
    assert inst["expanded_devices"]["data"] == {"type": "none"}, inst
    shown = yaml.safe_load(lxmd.cli("config", "show", c, "--expanded").stdout)
    assert shown["devices"]["data"] == {"type": "none"}, shown
    lxmd.cli("delete", c)
    lxmd.cli("profile", "delete", p)


@needs_busybox
def test_none_device_masks_profile_disk_in_running_container(lxmd, made, hostdir):
    p = unique("p")
    lxmd.cli("profile", "create", p)
    lxmd.cli("profile", "device", "add", p, "data", "disk", "source=" + hostdir,
             "path=/mnt/data")
    c = unique("c")
    made.append(c)
    lxmd.cli("launch", "busybox", c, "-p", "default", "-p", p, timeout=120)
    assert lxmd.cli("exec", c, "--", "cat", "/mnt/data/hello.txt").stdout == \
        "hello from the host\n"
    lxmd.cli("stop", "-f", c)
    lxmd.cli("config", "device", "add", c, "data", "none")
    lxmd.cli("start", c)
    p2 = lxmd.cli("exec", c, "--", "test", "-e", "/mnt/data/hello.txt", check=False)
    assert p2.returncode == 1, "the masked disk is still mounted"


# ---- profile device ----

def test_profile_device_commands(lxmd):
    p = unique("p")
    lxmd.cli("profile", "create", p)
    out = lxmd.cli("profile", "device", "add", p, "eth1", "nic", "network=nosuchnet",
                   "name=eth1").stdout
    assert out == "Device eth1 added to %s\n" % p
    assert profile(lxmd, p)["devices"] == {"eth1": {"type": "nic", "network": "nosuchnet",
                                                    "name": "eth1"}}
    lxmd.cli("profile", "device", "set", p, "eth1", "mtu", "1400")
    assert lxmd.cli("profile", "device", "get", p, "eth1", "mtu").stdout == "1400\n"
    assert profile(lxmd, p)["devices"]["eth1"]["mtu"] == "1400"
    lxmd.cli("profile", "device", "unset", p, "eth1", "mtu")
    assert "mtu" not in profile(lxmd, p)["devices"]["eth1"]
    lxmd.cli("profile", "device", "add", p, "aaa", "none")
    assert lxmd.cli("profile", "device", "list", p).stdout == "aaa\neth1\n"
    shown = yaml.safe_load(lxmd.cli("profile", "device", "show", p).stdout)
    assert shown == profile(lxmd, p)["devices"], shown

    err = fails(lxmd, "profile", "device", "add", p, "aaa", "none")
    assert "device 'aaa' already exists on profile '%s'" % p in err, err
    err = fails(lxmd, "profile", "device", "remove", p, "nope")
    assert "device 'nope' does not exist on profile '%s'" % p in err, err
    err = fails(lxmd, "profile", "device", "list", "nosuchprofile")
    assert "profile 'nosuchprofile'" in err and "not found" in err, err
    err = fails(lxmd, "profile", "device", "unset", p, "eth1", "type")
    assert "cannot unset key 'type'" in err, err

    lxmd.cli("profile", "device", "remove", p, "aaa", "eth1")
    assert profile(lxmd, p)["devices"] == {}
    lxmd.cli("profile", "delete", p)


# ---- profile copy, rename, add, remove, assign ----

def test_profile_copy_and_rename(lxmd, empty):
    src, dst, new = unique("p"), unique("q"), unique("r")
    lxmd.cli("profile", "create", src, input="description: source\nconfig:\n  user.a: '1'\n"
                                             "devices:\n  d0:\n    type: none\n")
    lxmd.cli("profile", "copy", src, dst)
    a, b = profile(lxmd, src), profile(lxmd, dst)
    assert (b["config"], b["devices"], b["description"]) == \
        (a["config"], a["devices"], "source"), b
    shown = yaml.safe_load(lxmd.cli("profile", "show", dst).stdout)
    assert shown["config"] == {"user.a": "1"} and shown["devices"] == {"d0": {"type": "none"}}
    err = fails(lxmd, "profile", "copy", src, dst)
    assert "copy profile '%s' to '%s'" % (src, dst) in err and "exists" in err, err
    err = fails(lxmd, "profile", "copy", "nosuch", dst)
    assert "profile 'nosuch'" in err and "not found" in err, err

    # A profile in use can be renamed (as in LXD): the instance follows the new name.
    lxmd.cli("profile", "add", empty, dst)
    lxmd.cli("profile", "rename", dst, new)
    assert instance(lxmd, empty)["profiles"] == ["default", new]
    assert instance(lxmd, empty)["expanded_config"]["user.a"] == "1"

    err = fails(lxmd, "profile", "rename", "default", "other")
    assert "default profile cannot be renamed" in err, err
    err = fails(lxmd, "profile", "delete", "default")
    assert "default profile cannot be deleted" in err, err


def test_profile_add_remove_assign_order(lxmd, empty):
    c = empty
    a, b = unique("pa"), unique("pb")
    lxmd.cli("profile", "create", a, input="config:\n  user.who: a\n  user.only-a: 'yes'\n")
    lxmd.cli("profile", "create", b, input="config:\n  user.who: b\n")

    def expanded():
        return yaml.safe_load(lxmd.cli("config", "show", c, "--expanded").stdout)

    assert lxmd.cli("profile", "add", c, a).stdout == "Profile %s added to %s\n" % (a, c)
    lxmd.cli("profile", "add", c, b)
    assert instance(lxmd, c)["profiles"] == ["default", a, b]
    shown = expanded()
    assert shown["profiles"] == ["default", a, b]
    assert shown["config"]["user.who"] == "b" and shown["config"]["user.only-a"] == "yes"

    out = lxmd.cli("profile", "assign", c, "%s,%s" % (b, a)).stdout
    assert out == "Profiles %s,%s applied to %s\n" % (b, a, c)
    assert instance(lxmd, c)["profiles"] == [b, a]
    assert expanded()["config"]["user.who"] == "a"

    assert lxmd.cli("profile", "remove", c, a).stdout == "Profile %s removed from %s\n" % (a, c)
    assert instance(lxmd, c)["profiles"] == [b]
    assert "user.only-a" not in expanded()["config"]

    out = lxmd.cli("profile", "assign", c, "").stdout
    assert out == "All profiles removed from %s\n" % c
    assert instance(lxmd, c)["profiles"] == []
    assert expanded()["profiles"] == [] and "user.who" not in expanded()["config"]

    err = fails(lxmd, "profile", "remove", c, a)
    assert "profile '%s' is not applied to instance '%s'" % (a, c) in err, err
    lxmd.cli("profile", "add", c, a)
    err = fails(lxmd, "profile", "add", c, a)
    assert "profile '%s' is already applied to instance '%s'" % (a, c) in err, err
    err = fails(lxmd, "profile", "add", c, "nosuchprofile")
    assert "profile 'nosuchprofile'" in err and "not found" in err, err
    err = fails(lxmd, "profile", "assign", c, "%s,,%s" % (a, b))
    assert "empty name" in err, err
    err = fails(lxmd, "profile", "add", "nosuch", a)
    assert "instance 'nosuch'" in err, err
    assert instance(lxmd, c)["profiles"] == [a]


# ---- profile create from stdin, and the example profiles ----

def test_profile_create_reads_yaml_from_stdin(lxmd):
    p = unique("p")
    body = ("description: from stdin\nconfig:\n  limits.cpu: 1\n  user.n: 42\n"
            "devices:\n  d0:\n    type: none\n")
    assert lxmd.cli("profile", "create", p, input=body).stdout == "Profile %s created\n" % p
    got = profile(lxmd, p)
    assert got["description"] == "from stdin"
    assert got["config"] == {"limits.cpu": "1", "user.n": "42"}
    assert got["devices"] == {"d0": {"type": "none"}}
    # Empty stdin: an empty profile.
    q = unique("q")
    lxmd.cli("profile", "create", q, input="")
    assert profile(lxmd, q)["config"] == {} and profile(lxmd, q)["devices"] == {}
    err = fails(lxmd, "profile", "create", unique("x"), input="config: [1, 2]\n")
    assert "config must be a map" in err, err
    err = fails(lxmd, "profile", "create", unique("x"), input="bogus: 1\n")
    assert "unknown field 'bogus'" in err, err
    err = fails(lxmd, "profile", "create", unique("x"), input="config:\n  nokey: 1\n")
    assert "nokey" in err, err


def example(name):
    with open(os.path.join(REPO, "profiles", name + ".yaml")) as f:
        text = f.read()
    return text, yaml.safe_load(text)


def install(lxmd, name, as_name=None):
    text, doc = example(name)
    p = as_name or unique(name.replace("-", ""))
    lxmd.cli("profile", "create", p, input=text)
    got = profile(lxmd, p)
    want = {k: str(v) for k, v in (doc.get("config") or {}).items()}
    assert got["config"] == want, got
    assert got["devices"] == (doc.get("devices") or {}), got
    return p


@needs_busybox
@pytest.mark.parametrize("name", ["hardened", "nesting", "limits-small"])
def test_example_profile_installs_and_container_starts(lxmd, made, name):
    p = install(lxmd, name)
    c = unique("c")
    made.append(c)
    lxmd.cli("launch", "busybox", c, "-p", "default", "-p", p, timeout=120)
    assert instance(lxmd, c)["status"] == "Running"
    lxmd.cli("exec", c, "--", "true")
    out = lxmd.cli("exec", c, "--", "sh", "-c", "echo ok").stdout
    assert out == "ok\n"
    if name == "hardened":
        # The allow list is in force: adjtimex (reading the clock state, which any container
        # may do) is not on it and fails with EPERM, while it works in a plain container.
        p2 = lxmd.cli("exec", c, "--", "adjtimex", check=False)
        assert p2.returncode != 0 and "Operation not permitted" in p2.stderr, p2
        plain = unique("c")
        made.append(plain)
        lxmd.cli("launch", "busybox", plain, timeout=120)
        lxmd.cli("exec", plain, "--", "adjtimex")
        # And net_raw (13) is out of the bounding set, which it is in by default.
        def cap_bnd(name):
            status = lxmd.cli("exec", name, "--", "cat", "/proc/self/status").stdout
            return int([line for line in status.splitlines()
                        if line.startswith("CapBnd:")][0].split()[1], 16)
        assert cap_bnd(plain) & (1 << 13), "net_raw is not in the default bounding set"
        assert not cap_bnd(c) & (1 << 13), "net_raw is still in the bounding set"
    if name == "limits-small":
        exp = instance(lxmd, c)["expanded_config"]
        assert exp["limits.memory"] == "256MiB" and exp["limits.processes"] == "500"


@needs_busybox
def test_example_default_profile(lxmd, made):
    """profiles/default.yaml: root disk on pool default, eth0 on lxmbr0. The test server has no
    lxmbr0, so the installed copy gets a network of the test's own."""
    p = install(lxmd, "default")
    net = create_network(lxmd, "lxmt", "ipv4.nat=false", "ipv6.address=none")[0]
    c = unique("c")
    try:
        lxmd.cli("profile", "device", "set", p, "eth0", "network", net)
        assert profile(lxmd, p)["devices"]["eth0"]["network"] == net
        lxmd.cli("launch", "busybox", c, "-p", p, timeout=120)
        assert instance(lxmd, c)["status"] == "Running"
        lxmd.cli("exec", c, "--", "ip", "link", "show", "eth0")
    finally:
        # The network is in use while the instance or the profile names it.
        lxmd.cli("delete", "-f", c, check=False)
        lxmd.cli("profile", "delete", p, check=False)
        delete_network(lxmd, net)


# ---- config edit ----

def test_config_edit_from_stdin_round_trips(lxmd, empty):
    c = empty
    lxmd.cli("config", "set", c, "user.old", "x")
    shown = lxmd.cli("config", "show", c).stdout
    doc = yaml.safe_load(shown)
    doc["config"].pop("user.old")
    doc["config"]["user.new"] = "y"
    doc["config"]["limits.cpu"] = 1
    doc["devices"]["d0"] = {"type": "none"}
    doc["description"] = "edited"
    lxmd.cli("config", "edit", c, input=yaml.safe_dump(doc))
    inst = instance(lxmd, c)
    assert inst["description"] == "edited"
    assert inst["devices"] == {"d0": {"type": "none"}}
    assert inst["config"].get("user.new") == "y" and inst["config"].get("limits.cpu") == "1"
    assert "user.old" not in inst["config"]
    # The edited document is what show prints now; feeding it back changes nothing.
    again = lxmd.cli("config", "show", c).stdout
    assert yaml.safe_load(again)["config"]["user.new"] == "y"
    etag = lxmd.api("GET", "/1.0/instances/" + c).headers["ETag"]
    lxmd.cli("config", "edit", c, input=again)
    assert lxmd.api("GET", "/1.0/instances/" + c).headers["ETag"] == etag

    err = fails(lxmd, "config", "edit", c, input="config:\n  limits.cpu: [1]\n")
    assert "must be text" in err, err
    err = fails(lxmd, "config", "edit", c, input="name: x\nbogus: 1\n")
    assert "unknown field 'bogus'" in err, err
    err = fails(lxmd, "config", "edit", c, input="config:\n  nokey: 1\n")
    assert "nokey" in err, err
    err = fails(lxmd, "config", "edit", "nosuch", input="config: {}\n")
    assert "instance 'nosuch'" in err, err
    assert instance(lxmd, c)["description"] == "edited"


def test_config_set_is_guarded_by_etag(lxmd, empty):
    """A change made between lxm's GET and its PUT makes the PUT fail (412)."""
    c = empty
    inst = lxmd.api("GET", "/1.0/instances/" + c)
    stale = inst.headers["ETag"]
    lxmd.cli("config", "set", c, "user.a", "1")
    body = {k: assert_sync(inst)[k] for k in ("architecture", "config", "devices", "ephemeral",
                                               "profiles", "description")}
    r = lxmd.api("PUT", "/1.0/instances/" + c, body, headers={"If-Match": stale})
    assert r.status == 412, r
    assert instance(lxmd, c)["config"]["user.a"] == "1"


# ---- the server's config ----

def test_server_config_show_get(lxmd):
    shown = yaml.safe_load(lxmd.cli("config", "show").stdout)
    assert shown == {"config": assert_sync(lxmd.api("GET", "/1.0"))["config"]}
    assert lxmd.cli("config", "get", "images.auto_update_interval").stdout == "\n"
    err = fails(lxmd, "config", "get", "nosuch", "user.x")
    assert "instance 'nosuch'" in err, err


def test_server_config_set_get(lxmd):
    r = lxmd.api("PUT", "/1.0", {"config": {}})
    if r.status == 405:
        pytest.skip("lxmd has no PUT /1.0 (server config cannot be changed yet)")
    lxmd.cli("config", "set", "images.auto_update_interval", "12")
    assert lxmd.cli("config", "get", "images.auto_update_interval").stdout == "12\n"
    assert assert_sync(lxmd.api("GET", "/1.0"))["config"]["images.auto_update_interval"] == "12"
    lxmd.cli("config", "set", "images.auto_update_interval=6")
    assert lxmd.cli("config", "get", "images.auto_update_interval").stdout == "6\n"
    lxmd.cli("config", "unset", "images.auto_update_interval")
    assert lxmd.cli("config", "get", "images.auto_update_interval").stdout == "\n"


def test_config_set_tells_instance_from_server(lxmd, empty):
    c = empty
    lxmd.cli("config", "set", c, "user.k", "v")            # NAME KEY VALUE
    lxmd.cli("config", "set", c, "user.a=1", "user.b=2")   # NAME KEY=VALUE...
    cfg = instance(lxmd, c)["config"]
    assert (cfg["user.k"], cfg["user.a"], cfg["user.b"]) == ("v", "1", "2")
    assert lxmd.cli("config", "get", c, "user.b").stdout == "2\n"
    err = fails(lxmd, "config", "set", c, "notakeyvalue")
    assert "invalid 'notakeyvalue'" in err, err
    err = fails(lxmd, "config", "set", c)
    assert "expected NAME KEY=VALUE" in err, err
    lxmd.cli("config", "unset", c, "user.k")
    assert "user.k" not in instance(lxmd, c)["config"]


def test_config_edit_in_editor_refused_after_concurrent_change(lxmd, empty, tmp_path):
    """With a terminal on stdin, `lxm config edit` runs $EDITOR; a change made while the editor
    is open makes the save fail with the ETag error, and the concurrent change is kept."""
    import pty
    import subprocess
    c = empty
    editor = tmp_path / "editor.sh"
    editor.write_text("#!/bin/sh\n"
                      "%s config set %s user.race won\n"
                      "sed -i 's/^description: .*/description: from-editor/' \"$1\"\n"
                      % (lxmd.lxm_bin, c))
    editor.chmod(0o755)
    master, slave = pty.openpty()
    try:
        p = subprocess.run([lxmd.lxm_bin, "config", "edit", c], stdin=slave,
                           capture_output=True, text=True, timeout=60,
                           env=lxmd.cli_env({"EDITOR": str(editor), "VISUAL": ""}))
    finally:
        os.close(master)
        os.close(slave)
    assert p.returncode == 1, p
    assert "update instance '%s'" % c in p.stderr and "retry" in p.stderr, p.stderr
    inst = instance(lxmd, c)
    assert inst["config"].get("user.race") == "won"
    assert inst["description"] != "from-editor"

    # Without a concurrent change the same editor flow saves.
    editor.write_text("#!/bin/sh\nsed -i 's/^description: .*/description: from-editor/' "
                      "\"$1\"\n")
    master, slave = pty.openpty()
    try:
        p = subprocess.run([lxmd.lxm_bin, "config", "edit", c], stdin=slave,
                           capture_output=True, text=True, timeout=60,
                           env=lxmd.cli_env({"EDITOR": str(editor), "VISUAL": ""}))
    finally:
        os.close(master)
        os.close(slave)
    assert p.returncode == 0, p
    assert instance(lxmd, c)["description"] == "from-editor"
    assert instance(lxmd, c)["config"].get("user.race") == "won"
