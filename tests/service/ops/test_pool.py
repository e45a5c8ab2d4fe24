"""The model pool: every registry model served by name, each with its own CURRENT and refusals;
pinned versions served exactly, loaded on demand and bounded; unknown names and versions refused
clearly (404), in the app, on real files."""
import shutil

import pytest
from fastapi.testclient import TestClient
from service_helpers import NAME, SHIPPED, add_model, make_version, metric, wait_until

from artifact.registry import set_current, version_path
from service.api.app import create_app
from service.core import offline

OLD, NEW = sorted(p.name for p in SHIPPED.iterdir() if p.is_dir())  # the shipped model's two versions


@pytest.fixture
def two_models(registry):
    """NAME (the trained model, the default) and "shipped" (the repository's model), CURRENT at its older version."""
    add_model(registry, "shipped", current=OLD)
    return registry


def settled(client) -> TestClient:
    """The client once every model's first load has finished (the others load after the default one)."""
    wait_until(lambda: all(m["state"] != "loading" for m in client.get("/models").json()["models"]), timeout=60)
    return client


def names(answer):
    return [n["name"] for n in answer["names"]]


def test_every_registry_model_is_served_by_name_and_never_mixed(two_models, settings_for):
    with TestClient(create_app(settings_for(two_models))) as client:
        settled(client)
        listed = {m["name"]: m for m in client.get("/models").json()["models"]}
        assert set(listed) == {NAME, "shipped"}
        assert listed["shipped"]["state"] == "ready" and listed["shipped"]["version"] == OLD
        assert listed[NAME]["default"] and not listed["shipped"]["default"]
        pool = client.app.state.pool
        default = client.get("/generate", params={"count": 8, "seed": 3}).json()
        shipped = client.get("/generate", params={"count": 8, "seed": 3, "model": "shipped"}).json()
        assert default["model"]["name"] == NAME and shipped["model"] == {"name": "shipped", "version": OLD}
        assert names(default) == offline.generate(pool.states[NAME].engine, count=8, seed=3).names
        assert names(shipped) == offline.generate(pool.states["shipped"].engine, count=8, seed=3).names
        assert names(default) != names(shipped)  # two models, two answers for one seed
        scored = client.post("/score", json={"names": ["emma"], "model": "shipped", "per_char": False}).json()
        assert scored["model"]["name"] == "shipped"
        assert scored["scores"][0]["logprob"] == offline.score(pool.states["shipped"].engine, ["emma"])[0].logprob
        assert client.get("/model", params={"model": "shipped"}).json()["version"] == OLD
        card = client.get("/model/card", params={"model": "shipped"})
        assert card.status_code == 200 and OLD in card.text and 'href="/model/card?model=names"' in card.text
        assert '<option value="shipped">' in client.get("/").text  # the playground's picker
        text = client.get("/metrics").text
        assert metric(text, "namegen_names_generated_total", model="shipped") == 8
        assert metric(text, "namegen_model_info", name="shipped", version=OLD) == 1
        assert metric(text, "namegen_model_ready", model="shipped") == 1


def test_an_unknown_model_is_404_naming_the_known_ones(two_models, settings_for):
    with TestClient(create_app(settings_for(two_models))) as client:
        for r in (client.get("/generate", params={"model": "nope"}),
                  client.post("/score", json={"names": ["a"], "model": "nope"}),
                  client.get("/model", params={"model": "nope"})):
            assert r.status_code == 404
            item = r.json()["detail"][0]
            assert item["field"] == "model" and "'nope'" in item["message"]
            assert NAME in item["message"] and "shipped" in item["message"]
        text = client.get("/metrics").text
        assert 'model="nope"' not in text  # no label value minted by a client


def test_a_pinned_version_answers_identically_across_a_publish(two_models, settings_for):
    with TestClient(create_app(settings_for(two_models))) as client:
        settled(client)
        pinned = {"count": 20, "seed": 11, "temperature": 0.8, "model": "shipped", "version": OLD}
        before = client.get("/generate", params=pinned).json()
        score_before = client.post("/score", json={"names": ["anna", "zed"], "model": "shipped", "version": OLD}).json()
        unpinned_before = client.get("/generate", params={k: v for k, v in pinned.items() if k != "version"}).json()
        set_current(two_models, "shipped", NEW)  # a publish of another version
        assert client.app.state.pool.reloaders["shipped"].check() == "ok"
        unpinned_after = client.get("/generate", params={k: v for k, v in pinned.items() if k != "version"}).json()
        assert unpinned_after["model"]["version"] == NEW
        assert names(unpinned_after) != names(unpinned_before)  # the publish changed the unpinned answer
        after = client.get("/generate", params=pinned).json()
        assert after == before and before["model"] == {"name": "shipped", "version": OLD}
        assert client.post("/score", json={"names": ["anna", "zed"], "model": "shipped", "version": OLD}).json() \
            == score_before
        loaded = {m["name"]: m for m in client.get("/models").json()["models"]}["shipped"]["loaded"]
        assert loaded == [NEW, OLD]  # the current one, then the pinned one


def test_a_version_not_in_the_registry_is_404_saying_so(two_models, settings_for):
    with TestClient(create_app(settings_for(two_models))) as client:
        settled(client)
        r = client.get("/generate", params={"model": "shipped", "version": "20990101T000000Z-000000"})
        assert r.status_code == 404
        assert r.json()["detail"][0] == {"field": "version", "message": "version '20990101T000000Z-000000' of model "
                                         "'shipped' is not in the registry (never published, or pruned)"}
        r = client.get("/generate", params={"model": "shipped", "version": "../names"})  # never made into a path
        assert r.status_code == 404
        pinned = {"model": "shipped", "version": OLD, "seed": 1}
        set_current(two_models, "shipped", NEW)
        client.app.state.pool.reloaders["shipped"].check()
        assert client.get("/generate", params=pinned).status_code == 200  # loaded, then pruned on disk
        gone = version_path(two_models, "shipped", OLD)  # removed as prune removes a version (prune
        shutil.rmtree(gone.rename(gone.with_name(f".tmp-prune-{OLD}")))  # itself keeps the rollback target)
        r = client.get("/generate", params=pinned)
        assert r.status_code == 404 and "pruned" in r.json()["detail"][0]["message"]


def test_a_failing_model_leaves_the_others_serving(two_models, settings_for):
    version = make_version(two_models, damage="corrupt", point=False)
    add_model(two_models, "broken", source=two_models / NAME, current=version)  # its CURRENT: a corrupt version
    with TestClient(create_app(settings_for(two_models))) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200  # the default model is ready: the others load after it
        assert {m["name"]: m["state"] for m in ready.json()["models"]}[NAME] == "ready"
        states = {m["name"]: m["state"] for m in settled(client).get("/models").json()["models"]}
        assert states == {NAME: "ready", "shipped": "ready", "broken": "checksum_mismatch"}
        r = client.get("/generate", params={"model": "broken"})
        assert r.status_code == 503 and "checksum_mismatch" in r.json()["detail"][0]["message"]
        assert "/" not in r.json()["detail"][0]["message"].split("(")[-1]  # a reason code, no path
        assert client.get("/generate", params={"model": "shipped"}).status_code == 200
        assert client.get("/generate").status_code == 200
        assert metric(client.get("/metrics").text, "namegen_model_ready", model="broken") == 0


def test_pinned_versions_are_bounded_least_recently_used_first(registry, settings_for):
    first, second = make_version(registry, point=False), make_version(registry, point=False)
    with TestClient(create_app(settings_for(registry, max_pinned=1))) as client:
        pool = client.app.state.pool
        current = pool.states[NAME].engine.version
        for version in (first, second):
            assert client.get("/generate", params={"version": version}).json()["model"]["version"] == version
        assert list(pool.pinned) == [(NAME, second)]
        assert pool.describe(NAME)["loaded"] == [current, second]
        assert client.get("/generate", params={"version": first, "seed": 4}).status_code == 200  # loaded again
        assert list(pool.pinned) == [(NAME, first)]
        assert metric(client.get("/metrics").text, "namegen_pinned_versions") == 1
    with TestClient(create_app(settings_for(registry, pinned_memory_mb=0))) as client:
        assert client.get("/generate", params={"version": first}).status_code == 200  # served, not kept
        assert not client.app.state.pool.pinned


def test_an_allow_list_limits_the_models_served(two_models, settings_for):
    with TestClient(create_app(settings_for(two_models, models=NAME))) as client:
        assert [m["name"] for m in client.get("/models").json()["models"]] == [NAME]
        assert client.get("/generate", params={"model": "shipped"}).status_code == 404


def test_a_pinned_version_of_a_corrupt_copy_is_refused_by_reason(registry, settings_for):
    version = make_version(registry, damage="corrupt", point=False)
    with TestClient(create_app(settings_for(registry))) as client:
        r = client.get("/generate", params={"version": version})
        assert r.status_code == 503
        assert r.json()["detail"][0]["field"] == "version" and "checksum_mismatch" in r.json()["detail"][0]["message"]
        assert version_path(registry, NAME, version).is_dir()
        assert client.get("/generate").status_code == 200


def test_a_model_published_under_a_new_name_is_picked_up(registry, settings_for):
    with TestClient(create_app(settings_for(registry))) as client:
        assert [m["name"] for m in client.get("/models").json()["models"]] == [NAME]
        add_model(registry, "shipped", current=OLD)
        client.app.state.pool.request()  # what SIGHUP does (and each NAMEGEN_RELOAD_INTERVAL)
        wait_until(lambda: {m["name"]: m["state"] for m in client.get("/models").json()["models"]}
                   == {NAME: "ready", "shipped": "ready"}, timeout=60)
        assert client.get("/generate", params={"model": "shipped"}).json()["model"]["version"] == OLD
