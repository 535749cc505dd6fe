"""lib/simplestreams against a local HTTPS simplestreams server (sstreams_server.py on
127.0.0.1): listing, lookup by alias and fingerprint, verified downloads, and refusals (tampered
files, wrong fingerprint, wrong sizes, missing files, untrusted certificate, plain http).

The library is driven through the client mode of its unit-test binary
(tests/unit/test-simplestreams list|find|download ...), until lxmd's remotes use it.
"""

import hashlib
import json
import os
import shutil
import subprocess
import tempfile

import pytest

import sstreams_server
from lxmtest import build_dir

CLIENT = os.path.join(build_dir(), "tests", "unit", "test-simplestreams")


@pytest.fixture(scope="module")
def server():
    if not os.access(CLIENT, os.X_OK):
        pytest.fail("%s is not built: make tests/unit/test-simplestreams" % CLIENT)
    work = tempfile.mkdtemp(prefix="lxm-it-sstreams-")
    root = os.path.join(work, "www")
    certs = os.path.join(work, "certs")
    os.makedirs(root)
    os.makedirs(certs)
    S = sstreams_server
    products, fps = {}, {}
    products["tiny:1:amd64:default"], fps["tiny-amd64"] = S.split_product(
        root, "images/tiny/1/amd64/default/20260101_00:00", "amd64", "tiny/1,tiny/one", "amd64")
    products["tiny:1:arm64:default"], fps["tiny-arm64"] = S.split_product(
        root, "images/tiny/1/arm64/default/20260101_00:00", "arm64", "tiny/1,tiny/one", "arm64")
    products["uni:1:amd64:default"], fps["uni"] = S.unified_product(
        root, "images/uni/20260101_00:00", "amd64", "uni", "unified")

    # An older version of tiny amd64 that must not be chosen.
    old, _ = S.split_product(root, "images/tiny/1/amd64/default/20251201_00:00", "amd64", "",
                             "old")
    products["tiny:1:amd64:default"]["versions"].update(old["versions"])

    # Tampered: the rootfs file changes after the catalogue was written.
    products["tampered:1:amd64:default"], fps["tampered"] = S.split_product(
        root, "images/tampered/20260101_00:00", "amd64", "tampered", "tampered")
    # Files that are what the catalogue says, but a fingerprint that is not theirs.
    products["badfp:1:amd64:default"], _ = S.split_product(
        root, "images/badfp/20260101_00:00", "amd64", "badfp", "badfp")
    fps["badfp"] = "0" * 64
    for it in products["badfp:1:amd64:default"]["versions"]["20260101_00:00"]["items"].values():
        if it["ftype"] == "lxd.tar.xz":
            it["combined_rootxz_sha256"] = it["combined_sha256"] = fps["badfp"]
    # Sizes that disagree with the files: one too small (oversize download), one too large
    # (short download).
    for name, delta in (("oversize", -100), ("short", +100)):
        products[name + ":1:amd64:default"], fps[name] = S.split_product(
            root, "images/%s/20260101_00:00" % name, "amd64", name, name)
        items = products[name + ":1:amd64:default"]["versions"]["20260101_00:00"]["items"]
        items["root.tar.xz"]["size"] += delta
    # A catalogue entry whose rootfs file is missing on the server.
    products["missing:1:amd64:default"], fps["missing"] = S.split_product(
        root, "images/missing/20260101_00:00", "amd64", "missing", "missing")
    S.write_catalogue(root, products)

    with open(os.path.join(root, "images/tampered/20260101_00:00/rootfs.tar.xz"), "r+b") as f:
        f.seek(1000)
        b = f.read(1)
        f.seek(1000)
        f.write(bytes([b[0] ^ 0xFF]))
    os.unlink(os.path.join(root, "images/missing/20260101_00:00/rootfs.tar.xz"))

    srv = S.Server(root, certs)
    srv.fps = fps
    srv.products = products
    srv.root = root
    yield srv
    srv.close()
    shutil.rmtree(work)


@pytest.fixture
def dest():
    d = tempfile.mkdtemp(prefix="lxm-it-sstreams-dl-")
    yield d
    shutil.rmtree(d)


def client(*args, ca=None):
    return subprocess.run([CLIENT, args[0], args[1], ca or "-"] + list(args[2:]),
                          capture_output=True, text=True, timeout=60)


def test_list(server):
    r = client("list", server.url, ca=server.ca)
    assert r.returncode == 0, r.stderr
    imgs = [json.loads(l) for l in r.stdout.splitlines()]
    by_product = {i["product"]: i for i in imgs}
    assert len(imgs) == len(by_product) == len(server.products)
    tiny = by_product["tiny:1:amd64:default"]
    assert tiny["fingerprint"] == server.fps["tiny-amd64"]
    assert tiny["version"] == "20260101_00:00", "not the latest version"
    assert tiny["architecture"] == "x86_64"
    assert tiny["type"] == "container"
    assert tiny["aliases"] == ["tiny/1", "tiny/one"]
    assert tiny["rootfs_ftype"] == "root.tar.xz"
    assert tiny["properties"]["description"] == "Tiny one amd64 (default) (20260101_00:00)"
    assert by_product["tiny:1:arm64:default"]["architecture"] == "aarch64"
    uni = by_product["uni:1:amd64:default"]
    assert uni["rootfs_path"] is None and uni["fingerprint"] == server.fps["uni"]
    # The client asked for the index, then the catalogue it names, once each.
    assert server.requests[:2] == ["/streams/v1/index.json", "/streams/v1/images.json"]


def test_find_by_alias_and_fingerprint(server):
    r = client("find", server.url, "tiny/one", "aarch64", ca=server.ca)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["fingerprint"] == server.fps["tiny-arm64"]
    r = client("find", server.url, "tiny/1/amd64", "aarch64", ca=server.ca)
    assert json.loads(r.stdout)["fingerprint"] == server.fps["tiny-amd64"]
    r = client("find", server.url, server.fps["uni"][:12], "-", ca=server.ca)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["product"] == "uni:1:amd64:default"
    r = client("find", server.url, "nonesuch", "x86_64", ca=server.ca)
    assert r.returncode == 1
    assert "image 'nonesuch' not found" in r.stderr, r.stderr
    assert server.url in r.stderr


def test_download_split(server, dest):
    r = client("download", server.url, "tiny/1", "x86_64", dest, ca=server.ca)
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(dest)) == ["meta", "rootfs"]
    img = json.loads(r.stdout)
    d = os.path.join(server.root, os.path.dirname(img["meta_path"]))
    for name, src in (("meta", "lxd.tar.xz"), ("rootfs", "rootfs.tar.xz")):
        with open(os.path.join(dest, name), "rb") as a, open(os.path.join(d, src), "rb") as b:
            assert a.read() == b.read(), name
    h = hashlib.sha256()
    for name in ("meta", "rootfs"):
        with open(os.path.join(dest, name), "rb") as f:
            h.update(f.read())
    assert h.hexdigest() == server.fps["tiny-amd64"]


def test_download_unified(server, dest):
    r = client("download", server.url, "uni", "x86_64", dest, ca=server.ca)
    assert r.returncode == 0, r.stderr
    assert os.listdir(dest) == ["meta"]
    assert sstreams_server.sha256_file(os.path.join(dest, "meta")) == server.fps["uni"]


@pytest.mark.parametrize("alias,message", [
    ("tampered", "sha256 mismatch"),
    ("badfp", "fingerprint mismatch"),
    ("oversize", "larger than the catalogue's"),
    ("short", "short download"),
    ("missing", "HTTP 404"),
])
def test_bad_download_leaves_nothing(server, dest, alias, message):
    r = client("download", server.url, alias, "x86_64", dest, ca=server.ca)
    assert r.returncode == 1
    assert message in r.stderr, r.stderr
    assert "download image %s" % server.fps[alias][:12] in r.stderr, r.stderr
    assert os.listdir(dest) == [], "a refused download left files behind"


def test_existing_file_is_not_overwritten(server, dest):
    with open(os.path.join(dest, "rootfs"), "w") as f:
        f.write("mine\n")
    r = client("download", server.url, "tiny/1", "x86_64", dest, ca=server.ca)
    assert r.returncode == 1
    assert "File exists" in r.stderr, r.stderr
    assert os.listdir(dest) == ["rootfs"], "meta was left behind"
    with open(os.path.join(dest, "rootfs")) as f:
        assert f.read() == "mine\n"


def test_untrusted_certificate(server, dest):
    r = client("download", server.url, "tiny/1", "x86_64", dest)  # system trust store only
    assert r.returncode == 1
    assert "TLS error" in r.stderr and "certificate" in r.stderr, r.stderr
    assert "/streams/v1/index.json" in r.stderr
    assert os.listdir(dest) == []


def test_plain_http_refused(server):
    r = client("list", server.url.replace("https://", "http://"), ca=server.ca)
    assert r.returncode == 1
    assert "only https:// URLs are supported" in r.stderr, r.stderr
