"""Pulling images from a simplestreams image server through lxmd's API: POST /1.0/instances and
POST /1.0/images with source {type: image, mode: pull, server, protocol: simplestreams}, against
the local HTTPS server of sstreams_server.py (127.0.0.1, its own CA). The served images are real:
a busybox rootfs made by the busybox template, split into lxd.tar.xz + root.tar.xz, so that a
pulled instance boots.

Checked: a launch pulls, runs and records the image as cached with its update_source; a second
launch and concurrent launches download once; a tampered file, an untrusted certificate and an
unknown alias fail with a message naming the alias and the server and leave nothing behind; a
server given is never answered from a local image; protocol lxd is 501; POST /1.0/images pulls
with aliases; refresh finds a newer version (aliases move) or nothing new."""

import io
import os
import shutil
import subprocess
import tarfile
import tempfile
import threading

import pytest

import lxmtest
import sstreams_server as S
from lxmtest import assert_async, assert_error_envelope, assert_sync

HERE = os.path.dirname(os.path.abspath(__file__))
TEMPLATE = os.path.join(HERE, "..", "..", "templates", "busybox", "build")
DEBIAN_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "i686": "i386", "armv7l": "armhf",
               "ppc64le": "ppc64el"}.get(os.uname().machine, os.uname().machine)


@pytest.fixture(scope="module")
def busybox_tree():
    """A busybox image tree (metadata.yaml, templates/, rootfs/) built once by the template."""
    work = tempfile.mkdtemp(prefix="lxm-it-remote-bb-")
    out = os.path.join(work, "out")
    p = subprocess.run([TEMPLATE, out], capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        shutil.rmtree(work, ignore_errors=True)
        pytest.fail("busybox template failed:\n%s" % p.stderr)
    yield out
    shutil.rmtree(work, ignore_errors=True)


def _tar_add_tree(t, top, prefix=""):
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames.sort()
        rel = os.path.relpath(dirpath, top)
        for name in sorted(dirnames) + sorted(filenames):
            full = os.path.join(dirpath, name)
            arc = os.path.normpath(os.path.join(prefix, rel, name))
            t.add(full, arcname=arc, recursive=False)


def make_version(root, tree, version, marker):
    """lxd.tar.xz + root.tar.xz of the busybox tree, with /etc/marker = marker, under
    root/images/bb/<version>/. Returns the product version entry and the fingerprint."""
    vdir = os.path.join(root, "images", "bb", version)
    os.makedirs(vdir)
    meta = os.path.join(vdir, "lxd.tar.xz")
    rootfs = os.path.join(vdir, "root.tar.xz")
    with tarfile.open(meta, "w:xz", preset=0) as t:
        t.add(os.path.join(tree, "metadata.yaml"), arcname="metadata.yaml")
        if os.path.isdir(os.path.join(tree, "templates")):
            t.add(os.path.join(tree, "templates"), arcname="templates")
    with tarfile.open(rootfs, "w:xz", preset=0) as t:
        _tar_add_tree(t, os.path.join(tree, "rootfs"))
        data = (marker + "\n").encode()
        info = tarfile.TarInfo("etc/marker")
        info.size = len(data)
        info.mode = 0o644
        t.addfile(info, io.BytesIO(data))
    fp = S.sha256_file(meta, rootfs)
    rel = os.path.relpath
    items = {
        "lxd.tar.xz": S.item(root, rel(meta, root), "lxd.tar.xz", combined_rootxz_sha256=fp,
                             combined_sha256=fp),
        "root.tar.xz": S.item(root, rel(rootfs, root), "root.tar.xz"),
    }
    return {"items": items}, fp, rel(rootfs, root)


class Remote:
    """A served catalogue: product "bb" (aliases bb, bb/1) in versions added by publish(), and a
    product "bad" whose rootfs was changed after the catalogue was written."""

    def __init__(self, tree):
        self.tree = tree
        self.work = tempfile.mkdtemp(prefix="lxm-it-remote-")
        self.root = os.path.join(self.work, "www")
        certs = os.path.join(self.work, "certs")
        os.makedirs(self.root)
        os.makedirs(certs)
        self.versions = {}
        self.fps = {}
        self.rootfs_paths = {}
        bad, self.bad_fp, bad_rootfs = make_version(self.root, tree, "bad", "bad")
        self.bad = bad
        self.publish("20260101_00:00", "v1")
        with open(os.path.join(self.root, bad_rootfs), "r+b") as f:
            f.seek(2000)
            b = f.read(1)
            f.seek(2000)
            f.write(bytes([b[0] ^ 0xFF]))
        self.srv = S.Server(self.root, certs)
        self.url = self.srv.url
        with open(self.srv.ca) as f:
            self.ca = f.read()

    def publish(self, version, marker):
        v, fp, rootfs = make_version(self.root, self.tree, version, marker)
        self.versions[version] = v
        self.fps[marker] = fp
        self.rootfs_paths[marker] = "/" + rootfs
        products = {
            "bb:1:%s:default" % DEBIAN_ARCH: {
                "aliases": "bb,bb/1", "arch": DEBIAN_ARCH, "os": "BB", "release": "1",
                "variant": "default", "versions": dict(self.versions)},
            "bad:1:%s:default" % DEBIAN_ARCH: {
                "aliases": "bad", "arch": DEBIAN_ARCH, "os": "BB", "release": "1",
                "variant": "default", "versions": {"20260101_00:00": self.bad}},
        }
        S.write_catalogue(self.root, products)
        return fp

    def downloads(self, marker):
        """How often the rootfs file of version marker was requested."""
        return sum(1 for p in self.srv.requests if p == self.rootfs_paths[marker])

    def close(self):
        self.srv.close()
        shutil.rmtree(self.work, ignore_errors=True)


@pytest.fixture
def remote(busybox_tree):
    r = Remote(busybox_tree)
    yield r
    r.close()


def source(remote, alias=None, certificate=True, **extra):
    s = {"type": "image", "mode": "pull", "server": remote.url, "protocol": "simplestreams"}
    if alias is not None:
        s["alias"] = alias
    if certificate:
        s["certificate"] = remote.ca
    s.update(extra)
    return s


def create(lxmd, name, src):
    """POST /1.0/instances; returns the finished operation."""
    op = assert_async(lxmd.api("POST", "/1.0/instances", {"name": name, "source": src}))
    return lxmd.wait_op(op["id"], timeout=120)


def images(lxmd):
    return assert_sync(lxmd.api("GET", "/1.0/images?recursion=1"))


def leftovers(lxmd):
    d = os.path.join(lxmd.root, "images")
    return sorted(f for f in os.listdir(d) if f.startswith(".tmp-"))


def delete_all(lxmd, names):
    for n in names:
        lxmd.cli("delete", "-f", n, check=False)


def test_launch_pulls_once_and_records_the_source(lxmd, remote):
    names = [lxmtest.unique("pull"), lxmtest.unique("pull")]
    try:
        done = create(lxmd, names[0], source(remote, "bb/1"))
        assert done["status"] == "Success", done
        lxmd.cli("start", names[0], timeout=60)
        inst = assert_sync(lxmd.api("GET", "/1.0/instances/" + names[0]))
        assert inst["status"] == "Running"
        out = lxmd.cli("exec", names[0], "--", "cat", "/etc/marker").stdout
        assert out.strip() == "v1", "the instance has the served image's files"

        imgs = images(lxmd)
        assert [i["fingerprint"] for i in imgs] == [remote.fps["v1"]]
        img = imgs[0]
        assert img["cached"] is True, "an image pulled for an instance is cached (LXD)"
        assert img["update_source"] == {"alias": "bb/1", "certificate": remote.ca,
                                        "protocol": "simplestreams", "server": remote.url,
                                        "image_type": "container"}
        assert remote.downloads("v1") == 1

        # Again, by fingerprint prefix: the store's copy, no second download.
        done = create(lxmd, names[1], source(remote, fingerprint=remote.fps["v1"][:12]))
        assert done["status"] == "Success", done
        assert remote.downloads("v1") == 1, "the image was downloaded again"
        assert len(images(lxmd)) == 1
        assert leftovers(lxmd) == []
    finally:
        delete_all(lxmd, names)


def test_concurrent_launches_download_once(lxmd, remote):
    names = [lxmtest.unique("conc") for _ in range(3)]
    try:
        ops = [assert_async(lxmd.api("POST", "/1.0/instances",
                                     {"name": n, "source": source(remote, "bb")}))
               for n in names]
        results = [None] * len(ops)

        def wait(i):
            results[i] = lxmd.wait_op(ops[i]["id"], timeout=120)

        threads = [threading.Thread(target=wait, args=(i,)) for i in range(len(ops))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for r in results:
            assert r["status"] == "Success", r
        assert remote.downloads("v1") == 1, "concurrent pulls downloaded %d times" \
            % remote.downloads("v1")
        assert [i["fingerprint"] for i in images(lxmd)] == [remote.fps["v1"]]
        assert lxmd.instance_names() == sorted(names)
    finally:
        delete_all(lxmd, names)


def test_tampered_file_fails_cleanly(lxmd, remote):
    name = lxmtest.unique("bad")
    done = create(lxmd, name, source(remote, "bad"))
    assert done["status"] == "Failure", done
    err = done["err"]
    assert "image 'bad' on %s" % remote.url in err, err
    assert "sha256" in err, err
    assert images(lxmd) == [], "a tampered image is in the store"
    assert lxmd.instance_names() == [], "an instance was left behind"
    assert leftovers(lxmd) == []
    assert not os.path.exists(os.path.join(lxmd.root, "containers", name))


def test_untrusted_certificate_is_a_tls_error(lxmd, remote):
    done = create(lxmd, lxmtest.unique("tls"), source(remote, "bb", certificate=False))
    assert done["status"] == "Failure", done
    assert "image 'bb' on %s" % remote.url in done["err"], done["err"]
    assert "TLS" in done["err"], done["err"]
    assert images(lxmd) == [] and lxmd.instance_names() == []
    assert leftovers(lxmd) == []


def test_unknown_alias_names_server_and_alias(lxmd, remote):
    done = create(lxmd, lxmtest.unique("nf"), source(remote, "nope/1"))
    assert done["status"] == "Failure", done
    assert done["err"].startswith("create instance"), done["err"]
    assert "image 'nope/1' on %s: not found" % remote.url in done["err"], done["err"]
    assert lxmd.instance_names() == []


def test_server_given_never_falls_back_to_a_local_image(lxmd, remote):
    # "busybox" is a local template alias: with a server named, only the server counts.
    done = create(lxmd, lxmtest.unique("nolocal"), source(remote, "busybox"))
    assert done["status"] == "Failure", done
    assert "image 'busybox' on %s: not found" % remote.url in done["err"], done["err"]
    assert images(lxmd) == [], "a local image was built or used"
    assert lxmd.instance_names() == []


def test_lxd_protocol_is_not_implemented(lxmd, remote):
    r = lxmd.api("POST", "/1.0/instances",
                 {"name": "x1", "source": source(remote, "bb", protocol="lxd")})
    msg = assert_error_envelope(r, 501)
    assert "protocol 'lxd'" in msg and remote.url in msg, msg
    r = lxmd.api("POST", "/1.0/images",
                 {"source": source(remote, "bb", protocol="lxd")})
    assert_error_envelope(r, 501)
    assert lxmd.instance_names() == []


def pull_image(lxmd, remote, alias, aliases=(), public=False):
    body = {"source": source(remote, alias), "public": public,
            "aliases": [{"name": a, "description": "d " + a} for a in aliases]}
    op = assert_async(lxmd.api("POST", "/1.0/images", body))
    return lxmd.wait_op(op["id"], timeout=120)


def test_images_post_pull_with_aliases(lxmd, remote):
    done = pull_image(lxmd, remote, "bb/1", aliases=["mybb", "team/bb"], public=True)
    assert done["status"] == "Success", done
    fp = done["metadata"]["fingerprint"]
    assert fp == remote.fps["v1"]
    img = assert_sync(lxmd.api("GET", "/1.0/images/" + fp))
    assert img["cached"] is False, "an image a user pulled is not cached"
    assert img["public"] is True
    assert sorted(a["name"] for a in img["aliases"]) == ["mybb", "team/bb"]
    assert img["update_source"]["alias"] == "bb/1"
    alias = assert_sync(lxmd.api("GET", "/1.0/images/aliases/team/bb"))
    assert alias["target"] == fp and alias["description"] == "d team/bb"
    assert remote.downloads("v1") == 1
    assert leftovers(lxmd) == []


def refresh(lxmd, fp):
    op = assert_async(lxmd.api("POST", "/1.0/images/%s/refresh" % fp, {}))
    return lxmd.wait_op(op["id"], timeout=120)


def test_refresh_user_image(lxmd, remote):
    done = pull_image(lxmd, remote, "bb", aliases=["mine"])
    assert done["status"] == "Success", done
    old = done["metadata"]["fingerprint"]

    done = refresh(lxmd, old)
    assert done["status"] == "Success", done
    assert done["metadata"]["refreshed"] is False
    assert remote.downloads("v1") == 1

    new = remote.publish("20260201_00:00", "v2")
    done = refresh(lxmd, old)
    assert done["status"] == "Success", done
    assert done["metadata"]["refreshed"] is True
    assert done["metadata"]["fingerprint"] == new
    assert assert_sync(lxmd.api("GET", "/1.0/images/aliases/mine"))["target"] == new
    fps = sorted(i["fingerprint"] for i in images(lxmd))
    assert fps == sorted([old, new]), "a user's old image is kept after a refresh"
    img = assert_sync(lxmd.api("GET", "/1.0/images/" + new))
    assert img["cached"] is False and img["update_source"]["alias"] == "bb"

    done = refresh(lxmd, new)
    assert done["status"] == "Success" and done["metadata"]["refreshed"] is False, done
    assert remote.downloads("v2") == 1


def test_refresh_cached_image_replaces_it(lxmd, remote):
    name = lxmtest.unique("rc")
    try:
        done = create(lxmd, name, source(remote, "bb"))
        assert done["status"] == "Success", done
        old = remote.fps["v1"]
        new = remote.publish("20260301_00:00", "v3")
        done = refresh(lxmd, old)
        assert done["status"] == "Success", done
        assert done["metadata"]["refreshed"] is True
        fps = [i["fingerprint"] for i in images(lxmd)]
        assert fps == [new], "the old cached image stays after its refresh (LXD drops it)"
        assert assert_sync(lxmd.api("GET", "/1.0/images/" + new))["cached"] is True
        assert not os.path.exists(os.path.join(lxmd.root, "images", old))
    finally:
        delete_all(lxmd, [name])


def test_refresh_of_an_imported_image_is_refused(lxmd, remote, busybox_tree):
    # An image with no source: 400 saying so.
    done = pull_image(lxmd, remote, "bb")
    fp = done["metadata"]["fingerprint"]
    lxmd.api("DELETE", "/1.0/images/" + fp)
    path = os.path.join(remote.root, "images", "bb", "20260101_00:00")
    with open(os.path.join(path, "lxd.tar.xz"), "rb") as m, \
            open(os.path.join(path, "root.tar.xz"), "rb") as r:
        meta, rootfs = m.read(), r.read()
    boundary = "lxmtestb0123"
    body = b""
    for pname, data in (("metadata", meta), ("rootfs", rootfs)):
        body += (b"--%s\r\nContent-Disposition: form-data; name=\"%s\"; filename=\"x\"\r\n\r\n"
                 % (boundary.encode(), pname.encode())) + data + b"\r\n"
    body += b"--%s--\r\n" % boundary.encode()
    op = assert_async(lxmd.api("POST", "/1.0/images", body,
                               {"Content-Type": "multipart/form-data; boundary=" + boundary}))
    done = lxmd.wait_op(op["id"], timeout=60)
    assert done["status"] == "Success", done
    assert "update_source" not in assert_sync(lxmd.api("GET", "/1.0/images/" + fp))
    msg = assert_error_envelope(lxmd.api("POST", "/1.0/images/%s/refresh" % fp, {}), 400)
    assert "no source to refresh from" in msg, msg
