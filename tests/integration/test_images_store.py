"""The image store through lxmd: the busybox template built into the store on first launch and
reused after, concurrent first launches sharing one build, launching by fingerprint prefix, image
templates rendered into new instances, image deletion, publish, and start-up cleanup."""

import hashlib
import os
import subprocess

import pytest

from lxmtest import (assert_async, assert_error_envelope, assert_sync, assert_timestamps, unique,
                     wait_for)

BUILD_LINE = "image 'busybox': building it with"

pytestmark = pytest.mark.skipif(
    not os.access("/bin/busybox", os.X_OK), reason="busybox-static is not installed")


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def images(lxmd):
    urls = assert_sync(lxmd.api("GET", "/1.0/images"))
    return sorted(u.rsplit("/", 1)[1] for u in urls)


def image(lxmd, fp):
    return assert_sync(lxmd.api("GET", "/1.0/images/" + fp))


def builds(lxmd):
    return lxmd.log_text().count(BUILD_LINE)


def exec_out(lxmd, name, *cmd):
    return lxmd.cli("exec", name, "--", *cmd).stdout


def create(lxmd, name, source, wait=True):
    """POST /1.0/instances from an image source; returns the finished operation."""
    op = assert_async(lxmd.api("POST", "/1.0/instances",
                               {"name": name, "source": dict(source, type="image")}))
    return lxmd.wait_op(op["id"], timeout=120) if wait else op


def store_entries(lxmd):
    return sorted(os.listdir(os.path.join(lxmd.root, "images")))


@pytest.fixture
def names(lxmd):
    """Instance names to force-delete at the end."""
    made = []
    yield made
    for n in made:
        lxmd.cli("delete", "-f", n, check=False)


def launch(lxmd, names, image_name="busybox", name=None):
    name = name or unique("c")
    names.append(name)
    lxmd.cli("launch", image_name, name, timeout=180)
    return name


def test_first_launch_stores_the_image_and_later_launches_reuse_it(lxmd, names):
    assert images(lxmd) == []
    c1 = launch(lxmd, names)
    fps = images(lxmd)
    assert len(fps) == 1, fps
    fp = fps[0]
    info = image(lxmd, fp)
    assert_timestamps(info)
    assert info["fingerprint"] == fp
    assert [a["name"] for a in info["aliases"]] == ["busybox"], info
    assert info["properties"]["os"] == "busybox" and info["properties"]["init"] == "busybox"
    assert info["type"] == "container" and info["architecture"], info
    assert info["last_used_at"] != "0001-01-01T00:00:00Z", info

    # Content-addressed: the fingerprint is the sha256 of the stored file.
    path = os.path.join(lxmd.root, "images", fp)
    assert sha256_of(path) == fp
    assert info["size"] == os.path.getsize(path)
    assert os.path.isdir(path + ".unpacked")
    assert not [e for e in store_entries(lxmd) if e.startswith((".tmp-", ".build-"))]

    # The instance records where it came from.
    config = assert_sync(lxmd.api("GET", "/1.0/instances/" + c1))["config"]
    assert config["volatile.base_image"] == fp
    assert config["image.os"] == "busybox"

    # Its /etc/hostname and /etc/hosts come from the image's templates.
    assert exec_out(lxmd, c1, "cat", "/etc/hostname") == c1 + "\n"
    assert "127.0.1.1\t%s\n" % c1 in exec_out(lxmd, c1, "cat", "/etc/hosts")

    # A second launch reuses the stored image: no second build, the file untouched.
    mtime = os.stat(path).st_mtime_ns
    assert builds(lxmd) == 1
    c2 = launch(lxmd, names)
    assert builds(lxmd) == 1, lxmd.log_text()
    assert images(lxmd) == [fp]
    assert os.stat(path).st_mtime_ns == mtime
    assert exec_out(lxmd, c2, "cat", "/etc/hostname") == c2 + "\n"


def test_concurrent_first_launches_build_once(lxmd, names):
    ns = [unique("c") for _ in range(3)]
    names.extend(ns)
    procs = [subprocess.Popen([lxmd.lxm_bin, "launch", "busybox", n], env=lxmd.cli_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for n in ns]
    for p in procs:
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
    assert builds(lxmd) == 1, lxmd.log_text()
    assert len(images(lxmd)) == 1
    for n in ns:
        st = assert_sync(lxmd.api("GET", "/1.0/instances/%s/state" % n))
        assert st["status"] == "Running", (n, st)


def test_first_launch_reports_progress(lxmd, names):
    """The operation's metadata follows the build: the template's run, packing the image (with
    bytes), copying the rootfs and rendering the templates."""
    name = unique("c")
    names.append(name)
    with lxmd.events(types=["operation"]) as ev:
        op = create(lxmd, name, {"alias": "busybox"}, wait=False)
        done = lxmd.wait_op(op["id"], timeout=120)
        assert done["status"] == "Success", done
        ev.wait_for(lambda e: e["metadata"]["id"] == op["id"] and
                    e["metadata"]["status"] == "Success")
    progress = [e["metadata"]["metadata"]["progress"] for e in ev.seen
                if e["metadata"]["id"] == op["id"] and e["metadata"]["metadata"]]
    stages = [p["stage"] for p in progress]
    for stage in ("build", "pack", "copy", "templates"):
        assert stage in stages, stages
    assert stages.index("build") < stages.index("pack") < stages.index("copy")
    packed = [p for p in progress if p["stage"] == "pack" and p["total"]]
    assert packed and packed[-1]["done"] == packed[-1]["total"] and packed[-1]["percent"] == 100


def test_launch_by_fingerprint_prefix_and_unknown_image(lxmd, names):
    launch(lxmd, names)
    fp = images(lxmd)[0]
    c2 = launch(lxmd, names, image_name=fp[:12])
    config = assert_sync(lxmd.api("GET", "/1.0/instances/" + c2))["config"]
    assert config["volatile.base_image"] == fp

    c3 = unique("c")
    names.append(c3)
    done = create(lxmd, c3, {"fingerprint": fp[:8].upper()})
    assert done["status"] == "Success", done

    # An unknown image is refused before any operation or instance exists.
    before = assert_sync(lxmd.api("GET", "/1.0/operations"))
    for source in ({"alias": "no-such-image"}, {"fingerprint": "0123abcd"}):
        name = unique("x")
        r = lxmd.api("POST", "/1.0/instances", {"name": name, "source": dict(source, type="image")})
        msg = assert_error_envelope(r, 404)
        assert "not found" in msg, msg
        assert lxmd.api("GET", "/1.0/instances/" + name).status == 404
    assert assert_sync(lxmd.api("GET", "/1.0/operations")) == before


def test_failed_fill_leaves_no_instance(lxmd, names):
    launch(lxmd, names)
    fp = images(lxmd)[0]
    store = os.path.join(lxmd.root, "images")
    # Without its unpacked tree the store unpacks the file again; a truncated file fails that.
    subprocess.run(["rm", "-rf", os.path.join(store, fp + ".unpacked")], check=True)
    with open(os.path.join(store, fp), "r+b") as f:
        f.truncate(os.path.getsize(f.name) // 2)
    name = unique("c")
    done = create(lxmd, name, {"alias": "busybox"})
    assert done["status"] == "Failure", done
    assert name in done["err"] and "unpack" in done["err"], done
    assert lxmd.api("GET", "/1.0/instances/" + name).status == 404
    wait_for(lambda: not os.path.exists(os.path.join(lxmd.root, "containers", name)),
             what="the instance's directory to go")
    assert not [e for e in store_entries(lxmd) if e.startswith(".tmp-")]


def test_delete_image_removes_its_files(lxmd, names):
    c1 = launch(lxmd, names)
    fp = images(lxmd)[0]
    r = lxmd.api("DELETE", "/1.0/images/" + fp)
    if r.status == 202:
        done = lxmd.wait_op(assert_async(r)["id"])
        assert done["status"] == "Success", done
    else:
        assert_sync(r)
    assert images(lxmd) == []
    assert lxmd.api("GET", "/1.0/images/" + fp).status == 404
    wait_for(lambda: not [e for e in store_entries(lxmd) if e.startswith(fp) or
                          e.startswith(".tmp-")], what="the image's files to go")
    # Instances made from it keep their own copy.
    assert exec_out(lxmd, c1, "cat", "/etc/hostname") == c1 + "\n"
    # The alias now builds a new image.
    launch(lxmd, names)
    assert builds(lxmd) == 2
    assert len(images(lxmd)) == 1 and images(lxmd) != [fp]


def publish(lxmd, name, alias):
    r = lxmd.api("POST", "/1.0/images", {"source": {"type": "instance", "name": name},
                                         "aliases": [{"name": alias, "description": ""}]})
    if r.status != 202:
        return r, None
    return r, lxmd.wait_op(assert_async(r)["id"], timeout=120)


def test_publish_stopped_container_and_launch_from_it(lxmd, names):
    c1 = launch(lxmd, names)
    lxmd.cli("exec", c1, "--", "sh", "-c", "echo published-content > /root/marker")
    # The instance's own identity must not travel into its image's copies.
    lxmd.cli("exec", c1, "--", "sh", "-c",
             "echo 0123456789abcdef0123456789abcdef > /etc/machine-id")
    lxmd.cli("stop", "--force", c1)
    alias = unique("img")
    r, done = publish(lxmd, c1, alias)
    assert done is not None and done["status"] == "Success", (r, done)
    target = assert_sync(lxmd.api("GET", "/1.0/images/aliases/" + alias))["target"]
    assert sha256_of(os.path.join(lxmd.root, "images", target)) == target
    info = image(lxmd, target)
    assert info["properties"]["os"] == "busybox", info
    assert len(images(lxmd)) == 2

    c2 = launch(lxmd, names, image_name=alias)
    assert exec_out(lxmd, c2, "cat", "/root/marker") == "published-content\n"
    assert exec_out(lxmd, c2, "cat", "/etc/machine-id") == "", "machine id not reset"
    # The source instance keeps its own.
    c1_id = os.path.join(lxmd.root, "containers", c1, "rootfs", "etc", "machine-id")
    with open(c1_id) as f:
        assert f.read() == "0123456789abcdef0123456789abcdef\n"
    # The source's templates came along: the new instance is named in /etc/hostname.
    assert exec_out(lxmd, c2, "cat", "/etc/hostname") == c2 + "\n"
    config = assert_sync(lxmd.api("GET", "/1.0/instances/" + c2))["config"]
    assert config["volatile.base_image"] == target


def test_machine_id_reset_never_follows_a_symlink(lxmd, names):
    c1 = launch(lxmd, names)
    lxmd.cli("exec", c1, "--", "sh", "-c",
             "echo keep-me > /root/keep && ln -sf /root/keep /etc/machine-id")
    lxmd.cli("stop", "--force", c1)
    alias = unique("img")
    r, done = publish(lxmd, c1, alias)
    assert done is not None and done["status"] == "Success", (r, done)
    c2 = launch(lxmd, names, image_name=alias)
    assert exec_out(lxmd, c2, "readlink", "/etc/machine-id") == "/root/keep\n"
    assert exec_out(lxmd, c2, "cat", "/root/keep") == "keep-me\n"


def test_publish_running_container_refused(lxmd, names):
    c1 = launch(lxmd, names)
    r, done = publish(lxmd, c1, unique("img"))
    if done is None:
        msg = assert_error_envelope(r, r.status)
        assert r.status in (400, 409), r
    else:
        assert done["status"] == "Failure", done
        msg = done["err"]
    assert "stop it first" in msg, msg
    assert len(images(lxmd)) == 1


def test_start_up_removes_leftovers(lxmd_factory):
    d = lxmd_factory()
    d.start()
    store = os.path.join(d.root, "images")
    d.stop_checked()
    os.makedirs(os.path.join(store, ".tmp-deadbeef", "rootfs"))
    os.makedirs(os.path.join(store, ".build-cafe", "rootfs"))
    orphan = "ab" * 32
    with open(os.path.join(store, orphan), "w") as f:
        f.write("not recorded anywhere")
    d.start()
    wait_for(lambda: store_entries(d) == [], what="leftovers to be removed")


def test_shutdown_during_a_build(lxmd_factory, tmp_path, monkeypatch):
    """lxmd stopping in the middle of a template build ends the build and the waiting create
    (no instance is left), and the next start removes the half-built image."""
    tpl = tmp_path / "busybox"
    tpl.mkdir()
    script = tpl / "build"
    script.write_text('#!/bin/sh\nmkdir -p "$1/rootfs"\necho "stage: slow"\nexec sleep 300\n')
    script.chmod(0o755)
    monkeypatch.setenv("LXM_TEMPLATES_DIR", str(tmp_path))
    d = lxmd_factory()
    d.start()
    name = unique("c")
    op = create(d, name, {"alias": "busybox"}, wait=False)
    wait_for(lambda: (assert_sync(d.api("GET", "/1.0/operations/" + op["id"]))["metadata"] or {})
             .get("progress", {}).get("stage") == "slow", what="the build to start")
    assert [e for e in store_entries(d) if e.startswith(".build-")]
    # lxmd waits (bounded, 30 s) for running operations, then abandons the build.
    assert d.stop(timeout=45) == 0, d.stderr_text()[-3000:]
    assert "image 'busybox'" in d.log_text()
    d.start()
    wait_for(lambda: store_entries(d) == [], what="the half-built image to be removed")
    assert d.api("GET", "/1.0/instances/" + name).status == 404
    assert images(d) == []
