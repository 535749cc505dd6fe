"""Profiles through the CLI and the API."""

import pytest
import yaml

from lxmtest import assert_error_envelope, assert_sync, unique


def profile(lxmd, name):
    return assert_sync(lxmd.api("GET", "/1.0/profiles/" + name))


def profile_names(lxmd):
    return sorted(u.rsplit("/", 1)[1] for u in assert_sync(lxmd.api("GET", "/1.0/profiles")))


def test_default_profile(lxmd):
    assert assert_sync(lxmd.api("GET", "/1.0/profiles")) == ["/1.0/profiles/default"]
    p = profile(lxmd, "default")
    assert p["name"] == "default"
    assert isinstance(p["description"], str) and p["description"].strip(), p
    assert isinstance(p["config"], dict) and isinstance(p["devices"], dict), p
    assert isinstance(p["used_by"], list), p
    objs = assert_sync(lxmd.api("GET", "/1.0/profiles?recursion=1"))
    assert [o["name"] for o in objs] == ["default"], objs


def test_cli_profile_lifecycle(lxmd):
    name, new = unique("p"), unique("q")
    lxmd.cli("profile", "create", name)
    assert name in lxmd.cli("profile", "list").stdout
    assert name in profile_names(lxmd)

    lxmd.cli("profile", "set", name, "user.lxm-it-key", "some value")
    assert lxmd.cli("profile", "get", name, "user.lxm-it-key").stdout.strip() == "some value"
    shown = yaml.safe_load(lxmd.cli("profile", "show", name).stdout)
    assert shown["name"] == name
    assert shown["config"] == {"user.lxm-it-key": "some value"}, shown
    assert profile(lxmd, name)["config"] == {"user.lxm-it-key": "some value"}

    lxmd.cli("profile", "unset", name, "user.lxm-it-key")
    assert lxmd.cli("profile", "get", name, "user.lxm-it-key").stdout.strip() == ""
    assert profile(lxmd, name)["config"] == {}

    lxmd.cli("profile", "rename", name, new)
    assert_error_envelope(lxmd.api("GET", "/1.0/profiles/" + name), 404)
    assert profile(lxmd, new)["name"] == new
    listed = lxmd.cli("profile", "list").stdout
    assert new in listed and name not in listed

    lxmd.cli("profile", "delete", new)
    assert profile_names(lxmd) == ["default"]
    assert new not in lxmd.cli("profile", "list").stdout


def test_cli_profile_set_key_equals_value(lxmd):
    name = unique("p")
    lxmd.cli("profile", "create", name)
    lxmd.cli("profile", "set", name, "user.a=1", "user.b=two words")
    assert profile(lxmd, name)["config"] == {"user.a": "1", "user.b": "two words"}


def test_cli_profile_edit_from_stdin(lxmd):
    name = unique("p")
    lxmd.cli("profile", "create", name)
    doc = "description: edited by lxm-it\nconfig:\n  user.lxm-it: \"42\"\ndevices: {}\n"
    lxmd.cli("profile", "edit", name, input=doc)
    p = profile(lxmd, name)
    assert p["description"] == "edited by lxm-it"
    assert p["config"] == {"user.lxm-it": "42"}


def test_cli_profile_errors(lxmd):
    name = unique("p")
    lxmd.cli("profile", "create", name)
    for args in (("profile", "create", name),          # exists
                 ("profile", "show", unique("none")),  # missing
                 ("profile", "delete", unique("none")),
                 ("profile", "rename", unique("none"), unique("x")),
                 ("profile", "delete", "default")):
        p = lxmd.cli(*args, check=False)
        assert p.returncode == 1, (args, p)
        assert p.stderr.startswith("Error: "), (args, p.stderr)
    assert profile_names(lxmd) == sorted(["default", name])


def test_api_profile_crud(lxmd):
    name, new = unique("p"), unique("q")
    r = lxmd.api("POST", "/1.0/profiles", {"name": name, "description": "d1",
                                           "config": {"user.a": "1", "user.b": "2"}, "devices": {}})
    assert r.status in (200, 201), r
    assert r.json["type"] == "sync", r.json
    assert_error_envelope(lxmd.api("POST", "/1.0/profiles", {"name": name}), 409)

    p = profile(lxmd, name)
    assert (p["description"], p["config"], p["used_by"]) == ("d1", {"user.a": "1", "user.b": "2"}, [])

    # PUT replaces.
    assert_sync(lxmd.api("PUT", "/1.0/profiles/" + name,
                         {"description": "d2", "config": {"user.c": "3"}, "devices": {}}))
    p = profile(lxmd, name)
    assert (p["description"], p["config"]) == ("d2", {"user.c": "3"})

    # PATCH merges.
    assert_sync(lxmd.api("PATCH", "/1.0/profiles/" + name, {"config": {"user.d": "4"}}))
    p = profile(lxmd, name)
    assert (p["description"], p["config"]) == ("d2", {"user.c": "3", "user.d": "4"})

    # Rename.
    r = lxmd.api("POST", "/1.0/profiles/" + name, {"name": new})
    assert r.status in (200, 201, 204), r
    assert_error_envelope(lxmd.api("GET", "/1.0/profiles/" + name), 404)
    assert profile(lxmd, new)["config"] == {"user.c": "3", "user.d": "4"}

    assert_sync(lxmd.api("DELETE", "/1.0/profiles/" + new))
    assert_error_envelope(lxmd.api("GET", "/1.0/profiles/" + new), 404)
    assert_error_envelope(lxmd.api("DELETE", "/1.0/profiles/" + new), 404)


def test_rename_onto_existing_refused(lxmd):
    a, b = unique("a"), unique("b")
    for n in (a, b):
        assert lxmd.api("POST", "/1.0/profiles", {"name": n}).status in (200, 201)
    assert_error_envelope(lxmd.api("POST", "/1.0/profiles/" + a, {"name": b}), 409)
    assert profile_names(lxmd) == sorted(["default", a, b])


@pytest.mark.parametrize("name", ["", "a/b", ".", ".."], ids=["empty", "slash", "dot", "dotdot"])
def test_invalid_profile_names_400(lxmd, name):
    msg = assert_error_envelope(lxmd.api("POST", "/1.0/profiles", {"name": name}), 400)
    assert "name" in msg.lower(), msg
    ok = unique("p")
    assert lxmd.api("POST", "/1.0/profiles", {"name": ok}).status in (200, 201)
    assert_error_envelope(lxmd.api("POST", "/1.0/profiles/" + ok, {"name": name}), 400)
    assert profile_names(lxmd) == sorted(["default", ok])


def test_cli_invalid_profile_name(lxmd):
    p = lxmd.cli("profile", "create", "a/b", check=False)
    assert p.returncode == 1 and p.stderr.startswith("Error: "), p
    assert profile_names(lxmd) == ["default"]


def test_delete_default_refused(lxmd):
    r = lxmd.api("DELETE", "/1.0/profiles/default")
    assert r.status in (400, 403, 409), r
    assert_error_envelope(r, r.status)
    assert profile(lxmd, "default")["name"] == "default"


def test_delete_in_use_refused(lxmd):
    p, inst = unique("p"), unique("c")
    lxmd.cli("profile", "create", p)
    lxmd.cli("init", "--empty", inst, "-p", "default", "-p", p)
    assert profile(lxmd, p)["used_by"] == ["/1.0/instances/" + inst]

    r = lxmd.api("DELETE", "/1.0/profiles/" + p)
    assert r.status in (400, 403, 409), r
    msg = assert_error_envelope(r, r.status)
    assert inst in msg, "the refusal does not name the instance using the profile: %r" % msg

    c = lxmd.cli("profile", "delete", p, check=False)
    assert c.returncode == 1 and inst in c.stderr, c
    assert p in profile_names(lxmd)

    # Once the instance is gone the profile can go.
    lxmd.cli("delete", inst)
    assert profile(lxmd, p)["used_by"] == []
    lxmd.cli("profile", "delete", p)
    assert profile_names(lxmd) == ["default"]


def test_etag(lxmd):
    name = unique("p")
    assert lxmd.api("POST", "/1.0/profiles", {"name": name, "description": "orig"}).status in (200, 201)
    r = lxmd.api("PUT", "/1.0/profiles/" + name, {"description": "changed", "config": {}, "devices": {}},
                 headers={"If-Match": "\"lxm-it-not-the-etag\""})
    assert_error_envelope(r, 412)
    r = lxmd.api("PATCH", "/1.0/profiles/" + name, {"description": "changed"},
                 headers={"If-Match": "lxm-it-not-the-etag"})
    assert_error_envelope(r, 412)
    assert profile(lxmd, name)["description"] == "orig"

    etag = lxmd.api("GET", "/1.0/profiles/" + name).headers.get("ETag")
    if etag is not None:
        assert_sync(lxmd.api("PUT", "/1.0/profiles/" + name,
                             {"description": "changed", "config": {}, "devices": {}},
                             headers={"If-Match": etag}))
        assert profile(lxmd, name)["description"] == "changed"
        # The old ETag no longer matches.
        r = lxmd.api("PUT", "/1.0/profiles/" + name, {"description": "again", "config": {}, "devices": {}},
                     headers={"If-Match": etag})
        assert_error_envelope(r, 412)
        assert profile(lxmd, name)["description"] == "changed"


def test_profile_lifecycle_events(lxmd):
    name = unique("p")
    with lxmd.events(types=["lifecycle"]) as ev:
        assert lxmd.api("POST", "/1.0/profiles", {"name": name}).status in (200, 201)
        e = ev.wait_for(lambda e: e["metadata"].get("action") == "profile-created")
        assert e["metadata"].get("source") == "/1.0/profiles/" + name, e
