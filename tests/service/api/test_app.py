"""What the app answers before any route: bodies that are not JSON, bodies that are too large."""
import pytest


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                                          "application/jsonx", "json"])
def test_post_with_a_body_that_is_not_json_gets_415(client, content_type):
    for path in ("/generate", "/score"):
        r = client.post(path, content=b'{"count": 1}', headers={"content-type": content_type})
        assert r.status_code == 415
        assert r.json()["detail"][0]["field"] == "content-type"


def test_post_without_content_type_but_with_a_body_gets_415(client):
    r = client.post("/generate", content=b'{"count": 1}', headers={"content-type": ""})
    assert r.status_code == 415


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8",
                                          "Application/JSON", "application/vnd.namegen+json"])
def test_post_with_a_json_content_type_is_served(client, content_type):
    r = client.post("/generate", content=b'{"count": 2, "seed": 1}', headers={"content-type": content_type})
    assert r.status_code == 200 and len(r.json()["names"]) == 2


def test_empty_post_needs_no_content_type(client):
    assert client.post("/generate").status_code == 200


def test_a_started_app_runs_the_collectors_young_pass_less_often(client):
    import gc

    from service.api.app import YOUNG_GENERATION
    assert client.get("/healthz").status_code == 200  # the lifespan has run
    assert gc.get_threshold()[0] == YOUNG_GENERATION > 700
