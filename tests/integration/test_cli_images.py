"""lxm image / publish / remote through the CLI, against private lxmds.

Images are tiny LXD-format tarballs made here with tarfile (metadata.yaml and a rootfs with a few
files); remotes live in a temporary LXM_CONF directory.
"""

import hashlib
import io
import json
import os
import tarfile

import pytest
import yaml

from lxmtest import assert_sync, unique


def _add(tar, name, data=None, mode=0o644, kind=tarfile.REGTYPE):
    info = tarfile.TarInfo(name)
    info.mode = mode
    info.mtime = 1700000000
    info.type = kind
    if kind == tarfile.DIRTYPE:
        tar.addfile(info)
    else:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


METADATA = (b"architecture: x86_64\ncreation_date: 1700000000\n"
            b"properties:\n  description: lxm-it tiny image\n  os: lxmit\n  release: \"1\"\n")


def make_unified(path, marker):
    """A unified image whose content (hence fingerprint) depends on marker."""
    with tarfile.open(path, "w:gz") as t:
        _add(t, "metadata.yaml", METADATA)
        _add(t, "rootfs", kind=tarfile.DIRTYPE, mode=0o755)
        _add(t, "rootfs/etc", kind=tarfile.DIRTYPE, mode=0o755)
        _add(t, "rootfs/etc/hostname", b"tiny\n")
        _add(t, "rootfs/etc/marker", marker.encode() + b"\n")
        _add(t, "rootfs/bin", kind=tarfile.DIRTYPE, mode=0o755)
        _add(t, "rootfs/bin/hello", b"#!/bin/sh\necho hello\n", mode=0o755)
    return sha256_of(path)


def make_split(meta_path, rootfs_path, marker):
    with tarfile.open(meta_path, "w:xz") as t:
        _add(t, "metadata.yaml", METADATA)
    with tarfile.open(rootfs_path, "w:gz") as t:
        _add(t, "etc", kind=tarfile.DIRTYPE, mode=0o755)
        _add(t, "etc/marker", marker.encode() + b"\n")
    h = hashlib.sha256()
    for p in (meta_path, rootfs_path):
        with open(p, "rb") as f:
            h.update(f.read())
    return h.hexdigest()


def sha256_of(*paths):
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            h.update(f.read())
    return h.hexdigest()


def images(lxmd):
    return assert_sync(lxmd.api("GET", "/1.0/images?recursion=1"))


def fingerprints(lxmd):
    return sorted(i["fingerprint"] for i in images(lxmd))


def failed(p, *words):
    """A CLI run that failed with an error naming each of words."""
    assert p.returncode != 0, "expected a failure:\n%s\n%s" % (p.stdout, p.stderr)
    assert p.stderr.startswith("Error: "), p.stderr
    for w in words:
        assert w in p.stderr, "%r not in %r" % (w, p.stderr)
    return p.stderr


@pytest.fixture
def conf(tmp_path):
    d = tmp_path / "conf"
    return {"LXM_CONF": str(d)}


@pytest.fixture
def tiny(tmp_path):
    path = str(tmp_path / "tiny.tar.gz")
    return path, make_unified(path, unique("m"))


def test_import_list_info_show(lxmd, tiny):
    path, fp = tiny
    alias = unique("tiny")
    p = lxmd.cli("image", "import", path, "--alias", alias, "--property", "user.k=v w")
    assert p.stdout.strip() == "Image imported with fingerprint: %s" % fp

    [img] = images(lxmd)
    assert img["fingerprint"] == fp
    assert [a["name"] for a in img["aliases"]] == [alias]
    assert img["properties"]["user.k"] == "v w"
    assert img["properties"]["description"] == "lxm-it tiny image"

    table = lxmd.cli("image", "list").stdout
    assert "FINGERPRINT" in table and "UPLOAD DATE" in table
    row = [line for line in table.splitlines() if fp[:12] in line]
    assert len(row) == 1 and alias in row[0] and "lxm-it tiny image" in row[0], table
    assert fp[:13] not in table  # 12 characters shown
    assert "MiB" in row[0] and "CONTAINER" in row[0] and "x86_64" in row[0]
    listed = json.loads(lxmd.cli("image", "list", "--format", "json").stdout)
    assert [i["fingerprint"] for i in listed] == [fp]
    csv = lxmd.cli("image", "list", "--format", "csv").stdout
    assert csv.startswith(alias + "," + fp[:12] + ",no,")

    info = lxmd.cli("image", "info", alias).stdout
    assert "Fingerprint: %s" % fp in info
    assert "Public: no" in info and "    - %s" % alias in info and "user.k: v w" in info
    # A fingerprint prefix names the image too.
    assert lxmd.cli("image", "info", fp[:8]).stdout == info

    shown = yaml.safe_load(lxmd.cli("image", "show", alias).stdout)
    assert shown["public"] is False
    assert shown["properties"]["os"] == "lxmit"
    assert "fingerprint" not in shown  # only the editable fields


def test_edit_round_trip(lxmd, tiny):
    path, fp = tiny
    lxmd.cli("image", "import", path)
    # Edited as text, as in an editor (PyYAML would turn expires_at into a datetime).
    text = lxmd.cli("image", "show", fp[:12]).stdout
    assert "public: false\n" in text and "description: lxm-it tiny image\n" in text
    text = text.replace("public: false\n", "public: true\n")
    text = text.replace("description: lxm-it tiny image\n", "description: edited by lxm-it\n")
    doc = yaml.safe_load(text)
    lxmd.cli("image", "edit", fp[:12], input=text)
    img = assert_sync(lxmd.api("GET", "/1.0/images/" + fp))
    assert img["public"] is True
    assert img["properties"]["description"] == "edited by lxm-it"
    again = yaml.safe_load(lxmd.cli("image", "show", fp).stdout)
    assert again["public"] is True and again["properties"] == doc["properties"]

    # A bad document changes nothing.
    failed(lxmd.cli("image", "edit", fp, input="public: maybe\n", check=False), "public")
    failed(lxmd.cli("image", "edit", fp, input="colour: blue\n", check=False), "colour")
    assert assert_sync(lxmd.api("GET", "/1.0/images/" + fp))["public"] is True


def test_aliases(lxmd, tiny):
    path, fp = tiny
    a, b, c = unique("a"), unique("b"), unique("c")
    lxmd.cli("image", "import", path, "--alias", a)
    lxmd.cli("image", "alias", "create", b, fp[:10], "--description", "second name")
    rows = json.loads(lxmd.cli("image", "alias", "list", "--format", "json").stdout)
    assert {r["name"]: r["target"] for r in rows} == {a: fp, b: fp}
    assert "second name" in lxmd.cli("image", "alias", "list").stdout

    lxmd.cli("image", "alias", "rename", b, c)
    names = sorted(r["name"] for r in json.loads(
        lxmd.cli("image", "alias", "list", "--format", "json").stdout))
    assert names == sorted([a, c])
    assert lxmd.cli("image", "info", c).stdout.startswith("Fingerprint: " + fp)

    lxmd.cli("image", "alias", "delete", c)
    failed(lxmd.cli("image", "info", c, check=False), c, "not found")
    failed(lxmd.cli("image", "alias", "delete", c, check=False), c, "not found")
    # The image itself stays.
    assert fingerprints(lxmd) == [fp]


def test_export_round_trip(lxmd, tiny, tmp_path):
    path, fp = tiny
    alias = unique("x")
    lxmd.cli("image", "import", path, "--alias", alias)
    out = tmp_path / "out"
    out.mkdir()
    p = lxmd.cli("image", "export", alias, str(out))
    files = os.listdir(out)
    assert len(files) == 1 and files[0].endswith(".tar.gz"), files
    assert sha256_of(str(out / files[0])) == fp
    assert str(out / files[0]) in p.stdout

    target = tmp_path / "named.tar.gz"
    lxmd.cli("image", "export", fp[:12], str(target))
    assert sha256_of(str(target)) == fp
    assert not [f for f in os.listdir(out) if f.startswith(".")]  # no temporary files left

    # Delete, then import what was exported: the same image again.
    lxmd.cli("image", "delete", alias)
    assert fingerprints(lxmd) == []
    p = lxmd.cli("image", "import", str(target))
    assert fp in p.stdout and fingerprints(lxmd) == [fp]


def test_split_import_export(lxmd, tmp_path):
    meta, rootfs = str(tmp_path / "meta.tar.xz"), str(tmp_path / "rootfs.tar.gz")
    fp = make_split(meta, rootfs, unique("m"))
    p = lxmd.cli("image", "import", meta, rootfs, "--alias", unique("s"))
    assert p.stdout.strip() == "Image imported with fingerprint: %s" % fp
    out = tmp_path / "out"
    out.mkdir()
    lxmd.cli("image", "export", fp, str(out))
    files = sorted(os.listdir(out))
    assert len(files) == 2, files
    metas = [f for f in files if sha256_of(str(out / f)) == sha256_of(meta)]
    roots = [f for f in files if sha256_of(str(out / f)) == sha256_of(rootfs)]
    assert len(metas) == 1 and len(roots) == 1, files
    assert sha256_of(str(out / metas[0]), str(out / roots[0])) == fp


def test_delete_several(lxmd, tmp_path):
    fps = []
    for i in range(2):
        p = str(tmp_path / ("i%d.tar.gz" % i))
        fps.append(make_unified(p, unique("m")))
        lxmd.cli("image", "import", p)
    assert fingerprints(lxmd) == sorted(fps)
    lxmd.cli("image", "delete", fps[0][:12], fps[1])
    assert fingerprints(lxmd) == []


def test_bad_input(lxmd, tiny, tmp_path, conf):
    path, fp = tiny
    name = unique("none")
    failed(lxmd.cli("image", "info", name, check=False),
           "image '%s': not found on remote 'local'" % name)
    failed(lxmd.cli("image", "delete", name, check=False), name, "not found")
    failed(lxmd.cli("image", "export", name, str(tmp_path), check=False), name, "not found")
    missing = str(tmp_path / "missing.tar.gz")
    failed(lxmd.cli("image", "import", missing, check=False), missing,
           "No such file or directory")
    for bad in ("has space", "tab\there", "/lead", ""):
        failed(lxmd.cli("image", "import", path, "--alias", bad, check=False), "invalid alias")
    assert fingerprints(lxmd) == []  # nothing was imported by the refused commands
    lxmd.cli("image", "import", path)
    failed(lxmd.cli("image", "alias", "create", "two words", fp, check=False), "invalid alias")
    failed(lxmd.cli("image", "alias", "create", unique("a"), "0" * 10, check=False),
           "not found")
    failed(lxmd.cli("image", "import", path, check=False), fp)  # already there
    failed(lxmd.cli("image", "list", "nowhere:", env=conf, check=False),
           "unknown remote 'nowhere'")
    failed(lxmd.cli("image", "info", "nowhere:x", env=conf, check=False),
           "unknown remote 'nowhere'")
    failed(lxmd.cli("launch", "nowhere:x", unique("c"), env=conf, check=False),
           "unknown remote 'nowhere'")


def test_remotes(lxmd, lxmd_factory, conf):
    sock = "unix://" + lxmd.socket
    lst = lxmd.cli("remote", "list", env=conf).stdout
    assert "local" in lst
    lxmd.cli("remote", "add", "other", sock, env=conf)
    lxmd.cli("remote", "add", "mirror", "https://127.0.0.1:1", "--protocol", "simplestreams",
             env=conf)
    remotes = json.loads(lxmd.cli("remote", "list", "--format", "json", env=conf).stdout)
    assert remotes["other"] == {"addr": sock, "protocol": "lxd", "public": False,
                                "static": False}
    assert remotes["mirror"]["protocol"] == "simplestreams" and remotes["mirror"]["public"]
    assert remotes["local"]["static"] is True
    assert os.path.isfile(os.path.join(conf["LXM_CONF"], "config.yml"))

    failed(lxmd.cli("remote", "add", "other", sock, env=conf, check=False), "already exists")
    failed(lxmd.cli("remote", "add", "b@d", sock, env=conf, check=False), "invalid remote name")
    failed(lxmd.cli("remote", "add", "x:y", sock, env=conf, check=False), "invalid remote name")
    failed(lxmd.cli("remote", "add", "web", "https://127.0.0.1:1", "--accept-certificate",
                    env=conf, check=False), "web", "cannot connect")
    failed(lxmd.cli("remote", "add", "rel", "unix://relative/sock", env=conf, check=False),
           "absolute")
    # A socket nobody serves is not added.
    failed(lxmd.cli("remote", "add", "dead", "unix:///nonexistent/unix.socket", env=conf,
                    check=False), "dead", "not running")
    failed(lxmd.cli("remote", "remove", "local", env=conf, check=False), "built in")
    failed(lxmd.cli("remote", "remove", "ghost", env=conf, check=False), "ghost")

    lxmd.cli("remote", "rename", "other", "renamed", env=conf)
    remotes = json.loads(lxmd.cli("remote", "list", "--format", "json", env=conf).stdout)
    assert "renamed" in remotes and "other" not in remotes
    lxmd.cli("remote", "remove", "renamed", env=conf)
    lxmd.cli("remote", "remove", "mirror", env=conf)
    remotes = json.loads(lxmd.cli("remote", "list", "--format", "json", env=conf).stdout)
    assert list(remotes) == ["local"]

    # A simplestreams remote has no image list of the LXD API.
    lxmd.cli("remote", "add", "mirror", "https://127.0.0.1:1", "--protocol", "simplestreams",
             env=conf)
    failed(lxmd.cli("image", "info", "mirror:debian", env=conf, check=False), "simplestreams")


def test_copy_between_lxmds(lxmd, lxmd_factory, tmp_path, conf):
    other = lxmd_factory()
    other.start()
    lxmd.cli("remote", "add", "two", "unix://" + other.socket, env=conf)

    unified = str(tmp_path / "u.tar.gz")
    ufp = make_unified(unified, unique("m"))
    meta, rootfs = str(tmp_path / "m.tar.xz"), str(tmp_path / "r.tar.gz")
    sfp = make_split(meta, rootfs, unique("m"))
    ua, sa = unique("u"), unique("s")
    lxmd.cli("image", "import", unified, "--alias", ua)
    lxmd.cli("image", "import", meta, rootfs, "--alias", sa)

    p = lxmd.cli("image", "copy", ua, "two:", "--copy-aliases", env=conf)
    assert ufp in p.stdout
    p = lxmd.cli("image", "copy", sa, "two:", "--alias", "copied", env=conf)
    assert sfp in p.stdout
    assert fingerprints(other) == sorted([ufp, sfp])
    theirs = {i["fingerprint"]: sorted(a["name"] for a in i["aliases"]) for i in images(other)}
    assert theirs == {ufp: [ua], sfp: ["copied"]}
    listed = lxmd.cli("image", "list", "two:", env=conf).stdout
    assert ufp[:12] in listed and sfp[:12] in listed

    # The copy is the same image: an export from the other side has the same bytes.
    out = tmp_path / "out"
    out.mkdir()
    lxmd.cli("image", "export", "two:copied", str(out), env=conf)
    assert len(os.listdir(out)) == 2

    # Back the other way, onto a daemon that lost it: init from the remote copies it first.
    lxmd.cli("image", "delete", ua)
    assert ufp not in fingerprints(lxmd)
    name = unique("c")
    p = lxmd.cli("init", "two:" + ua, name, env=conf)
    assert "Copying image" in p.stdout
    assert ufp in fingerprints(lxmd)
    inst = assert_sync(lxmd.api("GET", "/1.0/instances/" + name))
    assert inst["status"] == "Stopped"
    lxmd.cli("delete", name)

    failed(lxmd.cli("image", "copy", unique("none"), "two:", env=conf, check=False),
           "not found on remote 'local'")
    failed(lxmd.cli("image", "copy", "two:" + ua, "local:x", env=conf, check=False),
           "--alias")


def test_publish_busybox(lxmd):
    name, alias = unique("c"), unique("pub")
    lxmd.cli("init", "busybox", name, timeout=300)
    before = set(fingerprints(lxmd))
    p = lxmd.cli("publish", name, "--alias", alias, "user.from=lxm-it", timeout=300)
    assert p.stdout.startswith("Instance published with fingerprint: ")
    fp = p.stdout.split(":", 1)[1].strip()
    assert fp not in before and fp in fingerprints(lxmd)
    table = lxmd.cli("image", "list").stdout
    assert alias in table and fp[:12] in table
    img = assert_sync(lxmd.api("GET", "/1.0/images/" + fp))
    assert img["properties"].get("user.from") == "lxm-it"
    lxmd.cli("delete", name)
    failed(lxmd.cli("publish", unique("none"), check=False), "publish")
    failed(lxmd.cli("publish", name, "--compression", "lzma", check=False), "compression")


@pytest.fixture
def sstreams(tmp_path):
    """A local HTTPS simplestreams server with a split image for amd64 and arm64 (aliases
    tiny/1, tiny/one) and a unified one (uni), and its CA."""
    import sstreams_server as S
    root, certs = str(tmp_path / "www"), str(tmp_path / "certs")
    os.makedirs(root)
    os.makedirs(certs)
    products, fps = {}, {}
    products["tiny:1:amd64:default"], fps["tiny-amd64"] = S.split_product(
        root, "images/tiny/1/amd64/default/20260101_00:00", "amd64", "tiny/1,tiny/one", "a")
    products["tiny:1:arm64:default"], fps["tiny-arm64"] = S.split_product(
        root, "images/tiny/1/arm64/default/20260101_00:00", "arm64", "tiny/1,tiny/one", "b")
    products["uni:1:amd64:default"], fps["uni"] = S.unified_product(
        root, "images/uni/20260201_00:00", "amd64", "uni", "c")
    S.write_catalogue(root, products)
    srv = S.Server(root, certs)
    srv.fps = fps
    yield srv
    srv.close()


def test_simplestreams_image_list_and_info(lxmd, sstreams, conf):
    lxmd.cli("remote", "add", "ss", sstreams.url, "--protocol", "simplestreams", "--ca",
             sstreams.ca, env=conf)
    out = lxmd.cli("image", "list", "ss:", env=conf).stdout
    header = out.splitlines()[1]
    for col in ("ALIAS", "FINGERPRINT", "PUBLIC", "DESCRIPTION", "ARCHITECTURE", "TYPE", "SIZE",
                "UPLOAD DATE"):
        assert col in header, header
    for key in ("tiny-amd64", "tiny-arm64", "uni"):
        assert sstreams.fps[key][:12] in out, (key, out)
    row = [l for l in out.splitlines() if sstreams.fps["tiny-amd64"][:12] in l][0]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[0] == "tiny/1 (1 more)" and cells[2] == "yes", cells
    assert cells[4] == "x86_64" and cells[5] == "CONTAINER", cells
    assert cells[6].endswith("MiB") and cells[7] == "Jan 1, 2026 at 12:00am (UTC)", cells
    row = [l for l in out.splitlines() if sstreams.fps["tiny-arm64"][:12] in l][0]
    assert "aarch64" in row, row

    # JSON is the Image objects; filters work as for an lxmd.
    imgs = json.loads(lxmd.cli("image", "list", "ss:", "--format", "json", env=conf).stdout)
    assert sorted(i["fingerprint"] for i in imgs) == sorted(sstreams.fps.values())
    uni = [i for i in imgs if i["fingerprint"] == sstreams.fps["uni"]][0]
    assert [a["name"] for a in uni["aliases"]] == ["uni"] and uni["public"] is True
    assert uni["size"] == os.path.getsize(os.path.join(
        sstreams.root, "images/uni/20260201_00:00",
        os.listdir(os.path.join(sstreams.root, "images/uni/20260201_00:00"))[0]))
    csv = lxmd.cli("image", "list", "ss:", "uni", "--format", "csv", env=conf).stdout
    assert csv.count("\n") == 1 and sstreams.fps["uni"][:12] in csv, csv
    csv = lxmd.cli("image", "list", "ss:", "architecture=aarch64", "--format", "csv",
                   env=conf).stdout
    assert csv.count("\n") == 0, csv  # properties hold the Debian name, arm64
    csv = lxmd.cli("image", "list", "ss:", "architecture=arm64", "--format", "csv",
                   env=conf).stdout
    assert csv.count("\n") == 1 and sstreams.fps["tiny-arm64"][:12] in csv, csv

    # info by alias picks this host's architecture; by fingerprint prefix any.
    info = lxmd.cli("image", "info", "ss:tiny/one", env=conf).stdout
    arch = os.uname().machine
    want = sstreams.fps["tiny-amd64"] if arch == "x86_64" else sstreams.fps["tiny-arm64"]
    assert "Fingerprint: %s\n" % want in info, info
    assert "Public: yes" in info and "Properties:\n" in info and "    - tiny/1\n" in info, info
    info = lxmd.cli("image", "info", "ss:" + sstreams.fps["uni"][:10], env=conf).stdout
    assert "Fingerprint: %s\n" % sstreams.fps["uni"] in info, info
    assert "Created: 2026/02/01 00:00 UTC" in info, info

    failed(lxmd.cli("image", "info", "ss:nothere", env=conf, check=False), "nothere", "ss")
    # Without the CA the server is not trusted.
    lxmd.cli("remote", "add", "untrusted", sstreams.url, "--protocol", "simplestreams",
             env=conf)
    failed(lxmd.cli("image", "list", "untrusted:", env=conf, check=False), "untrusted")


def test_build_and_refresh(lxmd, tiny):
    out = lxmd.cli("image", "build", "busybox", "--alias", "bb-own", timeout=180).stdout
    fp = out.strip().rsplit(" ", 1)[-1]
    assert len(fp) == 64, out
    listed = json.loads(lxmd.cli("image", "list", "--format", "json").stdout)
    mine = [i for i in listed if i["fingerprint"] == fp]
    assert mine and {"busybox", "bb-own"} <= {a["name"] for a in mine[0]["aliases"]}

    # A template image is built again: a new fingerprint, and its aliases move to it.
    out = lxmd.cli("image", "refresh", "bb-own", timeout=180).stdout
    assert out.startswith("Image 'bb-own' refreshed: now "), out
    listed = json.loads(lxmd.cli("image", "list", "--format", "json").stdout)
    by_alias = {a["name"]: i["fingerprint"] for i in listed for a in i["aliases"]}
    assert by_alias["busybox"] != fp and by_alias["busybox"].startswith(out.split()[-1])

    # An imported image has nowhere to come from again.
    lxmd.cli("image", "import", tiny[0])
    r = lxmd.cli("image", "refresh", tiny[1][:12], check=False)
    assert r.returncode != 0 and "refresh image '%s'" % tiny[1][:12] in r.stderr, r.stderr
    r = lxmd.cli("image", "refresh", "no-such-image", check=False)
    assert r.returncode != 0 and "no-such-image" in r.stderr


def test_init_from_simplestreams_remote(lxmd, sstreams, conf):
    # The CLI names the server; lxmd downloads, verifies and caches the image (with its source),
    # and a second instance from it downloads nothing.
    lxmd.cli("remote", "add", "ss", sstreams.url, "--protocol", "simplestreams", "--ca",
             sstreams.ca, env=conf)
    want = sstreams.fps["tiny-amd64"] if os.uname().machine == "x86_64" \
        else sstreams.fps["tiny-arm64"]
    lxmd.cli("init", "ss:tiny/1", "r1", env=conf, timeout=120)
    inst = json.loads(lxmd.cli("list", "r1", "--format", "json").stdout)[0]
    assert inst["config"]["volatile.base_image"] == want, inst["config"]
    img = json.loads(lxmd.cli("image", "list", "--format", "json").stdout)
    mine = [i for i in img if i["fingerprint"] == want]
    assert mine and mine[0]["cached"] is True, img
    assert mine[0]["update_source"]["server"] == sstreams.url, mine[0]
    lxmd.cli("init", "ss:tiny/one", "r2", env=conf, timeout=120)
    assert len(json.loads(lxmd.cli("image", "list", "--format", "json").stdout)) == len(img)
    r = lxmd.cli("init", "ss:no-such/alias", "r3", env=conf, check=False)
    assert r.returncode != 0 and "no-such/alias" in r.stderr, r.stderr
    lxmd.cli("delete", "r1", "r2")
