"""Template builds through the API (lxm image build): POST /1.0/images with source {type:
template, name, release?} is an operation that builds the template's image, also when one
exists already (a rebuild: a new image, the aliases move to it, the old image stays), with
progress in its metadata and the fingerprint at the end; unknown templates are 404 naming the
known ones, a release the template refuses is 400 with its message; refresh rebuilds."""

import pytest

from lxmtest import assert_async, assert_error_envelope, assert_sync


def build(lxmd, name, release=None, aliases=(), stages=None):
    src = {"type": "template", "name": name}
    if release:
        src["release"] = release
    body = {"source": src, "public": False,
            "aliases": [{"name": a, "description": ""} for a in aliases]}
    op = assert_async(lxmd.api("POST", "/1.0/images", body))
    return lxmd.wait_op(op["id"], timeout=300)


def alias_target(lxmd, name):
    return assert_sync(lxmd.api("GET", "/1.0/images/aliases/" + name))["target"]


def test_build_and_rebuild_busybox(lxmd):
    with lxmd.events(types=["operation"], timeout=300) as ev:
        done = build(lxmd, "busybox", aliases=["bb-mine"])
        assert done["status"] == "Success", done
        first = done["metadata"]["fingerprint"]
        # Progress went through the operation while it built.
        seen = ev.wait_for(lambda e: (e["metadata"].get("metadata") or {}).get("progress"),
                           timeout=5)
        assert seen, "no progress in the operation's metadata"
    img = assert_sync(lxmd.api("GET", "/1.0/images/" + first))
    assert sorted(a["name"] for a in img["aliases"]) == ["bb-mine", "busybox"]
    assert img["cached"] is False
    assert "update_source" not in img, "a template build has no image server to show"

    done = build(lxmd, "busybox", aliases=["bb-mine"])
    assert done["status"] == "Success", done
    second = done["metadata"]["fingerprint"]
    assert second != first, "the rebuild gave the same image"
    assert alias_target(lxmd, "busybox") == second, "the template's alias did not move"
    assert alias_target(lxmd, "bb-mine") == second, "the requested alias did not move"
    fps = sorted(u.rsplit("/", 1)[1] for u in assert_sync(lxmd.api("GET", "/1.0/images")))
    assert fps == sorted([first, second]), "the old image is kept"
    assert assert_sync(lxmd.api("GET", "/1.0/images/" + first))["aliases"] == []

    # Refresh of a template's image rebuilds it; the aliases move on again.
    op = assert_async(lxmd.api("POST", "/1.0/images/%s/refresh" % second, {}))
    done = lxmd.wait_op(op["id"], timeout=300)
    assert done["status"] == "Success", done
    assert done["metadata"]["refreshed"] is True
    third = done["metadata"]["fingerprint"]
    assert third not in (first, second)
    assert alias_target(lxmd, "busybox") == third
    assert alias_target(lxmd, "bb-mine") == third

    # The built image launches.
    lxmd.cli("launch", "bb-mine", "b1", timeout=120)
    try:
        inst = assert_sync(lxmd.api("GET", "/1.0/instances/b1"))
        assert inst["status"] == "Running"
        assert inst["config"]["volatile.base_image"] == third
    finally:
        lxmd.cli("delete", "-f", "b1", check=False)


def test_unknown_template_is_404(lxmd):
    msg = assert_error_envelope(lxmd.api("POST", "/1.0/images",
                                         {"source": {"type": "template", "name": "gentoo"}}),
                                404)
    assert "template 'gentoo' not found (known: busybox, debian)" in msg, msg
    assert assert_sync(lxmd.api("GET", "/1.0/images")) == []


@pytest.mark.parametrize("name,release,words", [
    ("debian", "sid", "unsupported release 'sid'"),
    ("busybox", "1", "usage"),
])
def test_bad_release_is_400_with_the_templates_message(lxmd, name, release, words):
    done = build(lxmd, name, release=release)
    assert done["status"] == "Failure", done
    assert done["status_code"] == 400, done
    assert words in done["err"], done["err"]
    assert assert_sync(lxmd.api("GET", "/1.0/images")) == []
