"""The server's config (GET, PUT and PATCH /1.0 and `lxm config set/get/unset/show KEY`): the
keys lxmd honours, their checks (the key and value named, the nearest key suggested, the keys
lxm refuses for now), the ETag a write must match, and the keys' effects: the auto-update timer
re-armed live, cached images unused for images.remote_cache_expiry days removed (at start and
when the key changes) while others stay, images.auto_update_cached for images pulled for an
instance (from the local HTTPS simplestreams server of test_images_remote.py), and
images.compression_algorithm as publish's default."""

import os
import sqlite3
import time

import pytest

import lxmtest
from lxmtest import assert_error_envelope, assert_sync
from test_images_api import import_ok, unified_image
from test_images_remote import busybox_tree, create, delete_all, remote, source  # noqa: F401

DAY = 86400


def server_config(lxmd):
    return assert_sync(lxmd.api("GET", "/1.0"))["config"]


def etag_of(lxmd):
    r = lxmd.api("GET", "/1.0")
    assert r.status == 200
    etag = r.headers.get("ETag")
    assert etag, "GET /1.0 has no ETag: %r" % (r.headers,)
    return etag


def test_cli_set_get_unset_show(lxmd):
    lxmd.cli("config", "set", "images.auto_update_interval", "12")
    assert lxmd.cli("config", "get", "images.auto_update_interval").stdout.strip() == "12"
    assert server_config(lxmd)["images.auto_update_interval"] == "12"
    show = lxmd.cli("config", "show").stdout
    assert "images.auto_update_interval" in show and "12" in show, show
    # The change is live: the timer is re-armed at once, and says so.
    lxmtest.wait_for(lambda: "images.auto_update_interval set to 12: auto-update timer re-armed"
                     in lxmd.log_text(), timeout=5, what="re-arm log line")

    lxmd.cli("config", "set", "images.auto_update_interval=0", "images.auto_update_cached=false")
    cfg = server_config(lxmd)
    assert cfg["images.auto_update_interval"] == "0"
    assert cfg["images.auto_update_cached"] == "false"
    lxmtest.wait_for(lambda: "auto-update of images is off" in lxmd.log_text(), timeout=5,
                     what="auto-update off log line")

    lxmd.cli("config", "unset", "images.auto_update_interval")
    assert lxmd.cli("config", "get", "images.auto_update_interval").stdout.strip() == ""
    assert "images.auto_update_interval" not in server_config(lxmd)
    assert server_config(lxmd)["images.auto_update_cached"] == "false"

    # A restart keeps the config and arms the timer from it.
    lxmd.cli("config", "set", "images.auto_update_interval", "24")
    lxmd.restart()
    assert server_config(lxmd)["images.auto_update_interval"] == "24"
    assert "auto-update of images every 24 h" in lxmd.log_text()


def test_cli_refusals_name_key_value_and_suggest(lxmd):
    p = lxmd.cli("config", "set", "images.auto_update_interval", "soon", check=False)
    assert p.returncode != 0
    assert "images.auto_update_interval" in p.stderr and "'soon'" in p.stderr, p.stderr
    assert "whole number" in p.stderr, p.stderr

    p = lxmd.cli("config", "set", "images.compression_algorithm", "bzip2", check=False)
    assert p.returncode != 0 and "'bzip2'" in p.stderr and "zstd" in p.stderr, p.stderr

    p = lxmd.cli("config", "set", "images.auto_update_intervall", "3", check=False)
    assert p.returncode != 0
    assert "unknown server config key 'images.auto_update_intervall'" in p.stderr, p.stderr
    assert "did you mean 'images.auto_update_interval'" in p.stderr, p.stderr

    p = lxmd.cli("config", "set", "core.https_address", "8443", check=False)
    assert p.returncode != 0
    assert "core.https_address" in p.stderr and "[IP]:PORT" in p.stderr, p.stderr

    # Nothing was stored by the refused writes.
    assert server_config(lxmd) == {}


def test_put_patch_with_etag(lxmd):
    etag = etag_of(lxmd)
    r = lxmd.api("PUT", "/1.0", {"config": {"images.remote_cache_expiry": "5",
                                            "images.compression_algorithm": "xz"}},
                 {"If-Match": etag})
    assert_sync(r)
    assert server_config(lxmd) == {"images.remote_cache_expiry": "5",
                                   "images.compression_algorithm": "xz"}
    new = etag_of(lxmd)
    assert new != etag

    # The ETag read before the PUT is stale now.
    r = lxmd.api("PATCH", "/1.0", {"config": {"images.remote_cache_expiry": "7"}},
                 {"If-Match": etag})
    msg = assert_error_envelope(r, 412)
    assert "ETag" in msg, msg
    r = lxmd.api("PUT", "/1.0", {"config": {}}, {"If-Match": '"%s"' % etag})
    assert_error_envelope(r, 412)
    assert server_config(lxmd)["images.remote_cache_expiry"] == "5"

    # PATCH merges; "" and null remove; numbers are taken as their text.
    r = lxmd.api("PATCH", "/1.0", {"config": {"images.remote_cache_expiry": 7,
                                              "images.compression_algorithm": None,
                                              "images.auto_update_cached": "false"}},
                 {"If-Match": new})
    assert_sync(r)
    assert server_config(lxmd) == {"images.remote_cache_expiry": "7",
                                   "images.auto_update_cached": "false"}
    assert_sync(lxmd.api("PATCH", "/1.0", {"config": {"images.auto_update_cached": ""}}))
    assert server_config(lxmd) == {"images.remote_cache_expiry": "7"}

    # PUT replaces: what it leaves out is gone.
    assert_sync(lxmd.api("PUT", "/1.0", {"config": {"images.auto_update_interval": "1"}}))
    assert server_config(lxmd) == {"images.auto_update_interval": "1"}

    # Refusals through the API: nothing changes.
    for body, words in (
            ({"images.auto_update_interval": "-3"}, ["images.auto_update_interval", "'-3'"]),
            ({"images.remote_cache_expiri": "3"}, ["did you mean 'images.remote_cache_expiry'"]),
            ({"core.https_address": "8443"}, ["core.https_address", "[IP]:PORT"]),
            ({"images.auto_update_cached": ["x"]}, ["images.auto_update_cached", "string"])):
        for method in ("PUT", "PATCH"):
            msg = assert_error_envelope(lxmd.api(method, "/1.0", {"config": body}), 400)
            for w in words:
                assert w in msg, (method, body, msg)
    assert_error_envelope(lxmd.api("PUT", "/1.0", {"config": "x"}), 400)
    assert server_config(lxmd) == {"images.auto_update_interval": "1"}


def _set_images(root, rows):
    """Edits image rows of a stopped lxmd's database: fingerprint -> {column: value}, times in
    unix seconds (the database keeps nanoseconds)."""
    db = sqlite3.connect(os.path.join(root, "lxm.db"))
    try:
        for fp, cols in rows.items():
            for col, val in cols.items():
                assert col in ("cached", "last_used_at", "uploaded_at")
                if col != "cached":
                    val *= 10**9
                db.execute("UPDATE images SET %s = ? WHERE fingerprint = ?" % col, (val, fp))
        db.commit()
    finally:
        db.close()


def _fingerprints(lxmd):
    return sorted(u.rsplit("/", 1)[1] for u in assert_sync(lxmd.api("GET", "/1.0/images")))


def test_expired_cached_images_are_removed(lxmd):
    old, recent, users = (import_ok(lxmd, unified_image(t)) for t in ("old", "recent", "users"))
    now = int(time.time())
    lxmd.stop_checked()
    _set_images(lxmd.root, {
        old: {"cached": 1, "last_used_at": now - 20 * DAY},
        recent: {"cached": 1, "last_used_at": now - DAY - 3600},
        users: {"cached": 0, "last_used_at": now - 400 * DAY},
    })
    lxmd.start()
    # The check at start: default 10 days; only the cached image unused for 20 days goes.
    lxmtest.wait_for(lambda: old not in _fingerprints(lxmd), timeout=10,
                     what="expired cached image removed at start")
    assert _fingerprints(lxmd) == sorted([recent, users])
    lxmtest.wait_for(lambda: not os.path.exists(os.path.join(lxmd.root, "images", old)),
                     timeout=10, what="expired image's file removed")
    assert "cached image %s: unused for 10 days or more" % old in lxmd.log_text()
    assert os.path.exists(os.path.join(lxmd.root, "images", recent))

    # 0 keeps cached images forever.
    lxmd.cli("config", "set", "images.remote_cache_expiry", "0")
    time.sleep(0.5)
    assert _fingerprints(lxmd) == sorted([recent, users])

    # A shorter expiry applies at once: the image unused for 25 h goes, the user's stays.
    with lxmd.events(types=["lifecycle"]) as ev:
        lxmd.cli("config", "set", "images.remote_cache_expiry", "1")
        ev.wait_for(lambda e: e["metadata"]["action"] == "image-deleted"
                    and e["metadata"]["source"] == "/1.0/images/" + recent)
    assert _fingerprints(lxmd) == [users]
    info = assert_sync(lxmd.api("GET", "/1.0/images/" + users))
    assert info["cached"] is False


@pytest.mark.skipif(not os.access("/bin/busybox", os.X_OK), reason="busybox-static is not installed")
def test_compression_algorithm_is_publish_default(lxmd, launched):
    name = launched()
    lxmd.cli("stop", "--force", name)
    lxmd.cli("config", "set", "images.compression_algorithm", "xz")
    lxmd.cli("publish", name, "--alias", "pub-xz", timeout=180)
    fp = assert_sync(lxmd.api("GET", "/1.0/images/aliases/pub-xz"))["target"]
    info = assert_sync(lxmd.api("GET", "/1.0/images/" + fp))
    assert info["filename"].endswith(".tar.xz"), info["filename"]
    with open(os.path.join(lxmd.root, "images", fp), "rb") as f:
        assert f.read(6) == b"\xfd7zXZ\x00", "published image is not xz-compressed"
    # A request that names its compression still gets it.
    lxmd.cli("publish", name, "--alias", "pub-none", "--compression", "none", timeout=180)
    fp = assert_sync(lxmd.api("GET", "/1.0/images/aliases/pub-none"))["target"]
    assert assert_sync(lxmd.api("GET", "/1.0/images/" + fp))["filename"].endswith(".tar")


def test_auto_update_cached(lxmd, remote):
    names = [lxmtest.unique("auc"), lxmtest.unique("auc")]
    v1 = remote.fps["v1"]
    try:
        # Default true: an image cached for an instance keeps itself up to date.
        done = create(lxmd, names[0], source(remote, "bb"))
        assert done["status"] == "Success", done
        img = assert_sync(lxmd.api("GET", "/1.0/images/" + v1))
        assert img["cached"] is True and img["auto_update"] is True, img

        # A user's pull of that image makes it the user's, with the user's auto_update (not the
        # one images.auto_update_cached gave it); nothing is downloaded again.
        op = lxmtest.assert_async(lxmd.api("POST", "/1.0/images", {
            "source": source(remote, "bb"), "auto_update": False}))
        done = lxmd.wait_op(op["id"], timeout=120)
        assert done["status"] == "Success", done
        img = assert_sync(lxmd.api("GET", "/1.0/images/" + v1))
        assert img["cached"] is False and img["auto_update"] is False, img
        assert remote.downloads("v1") == 1

        # false: the next image cached for an instance is not auto_update.
        lxmd.cli("config", "set", "images.auto_update_cached", "false")
        v2 = remote.publish("20260201_00:00", "v2")
        done = create(lxmd, names[1], source(remote, "bb"))
        assert done["status"] == "Success", done
        img = assert_sync(lxmd.api("GET", "/1.0/images/" + v2))
        assert img["cached"] is True and img["auto_update"] is False, img
    finally:
        delete_all(lxmd, names)
