"""The API document states every limit (from the settings and the served model), /metrics is
declared as text, and a 405 lists every method of the path."""
from fastapi.testclient import TestClient

from service.api.app import create_app


def doc_for(settings):
    with TestClient(create_app(settings)) as c:
        return c.get("/openapi.json").json(), c.options("/generate"), c.get("/metrics")


def test_openapi_states_the_limits_of_the_settings_and_the_model(trained_registry, settings_for):
    doc, _, _ = doc_for(settings_for(trained_registry, max_count=500, max_length=40, max_score_names=300))
    body = doc["paths"]["/generate"]["post"]["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert (body["count"]["minimum"], body["count"]["maximum"]) == (1, 500)
    assert body["max_length"] == {**body["max_length"], "type": ["integer", "null"], "minimum": 1, "maximum": 40}
    assert (body["top_k"]["minimum"], body["top_k"]["maximum"]) == (1, 27)  # the model's vocabulary size
    letters = "abcdefghijklmnopqrstuvwxyz"
    typed = f"^[{letters}{letters.upper()}]*$"  # a lower-case model reads capitals as their lower case
    assert body["prefix"]["pattern"] == typed and body["prefix"]["maxLength"] == 39
    for text in ("suffix", "contains"):
        assert body[text]["pattern"] == typed and body[text]["maxLength"] == 40
    assert body["min_length"] == {**body["min_length"], "type": ["integer", "null"], "minimum": 1, "maximum": 40}
    assert body["exclude"]["maxItems"] == 500 and body["exclude"]["items"]["maxLength"] == 40
    assert body["case"]["enum"] == ["lower", "title"]
    for field in ("novel_only", "min_length", "suffix", "contains", "exclude", "unique"):
        assert "2000 attempts in a row" in body[field]["description"] and "5 s" in body[field]["description"]
    assert body["temperature"]["exclusiveMinimum"] == 0 and body["temperature"]["maximum"] == 10
    assert body["seed"]["exclusiveMaximum"] == 2 ** 63
    query = {p["name"]: p["schema"] for p in doc["paths"]["/generate"]["get"]["parameters"]}
    assert query["count"]["maximum"] == 500 and query["top_k"] == {**query["top_k"], "type": "integer", "maximum": 27}
    assert query["exclude"]["type"] == "string"  # comma-separated in a query
    score = str(doc)  # wherever FastAPI puts the /score body schema (inline or a component)
    assert "'maxItems': 300" in score and "'items': {'type': 'string', 'maxLength': 40, 'pattern': '^[abcdefghijklmnopqrstuvwxyz]*$'}" in score


def test_openapi_without_a_model_states_the_settings_limits(tmp_path, settings_for):
    doc, _, _ = doc_for(settings_for(tmp_path / "empty"))
    body = doc["paths"]["/generate"]["post"]["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert body["count"]["maximum"] == 1000 and "pattern" not in body["prefix"] and "maximum" not in body["top_k"]


def test_metrics_is_declared_as_prometheus_text_and_405_lists_every_method(trained_registry, settings_for):
    doc, options, metrics = doc_for(settings_for(trained_registry))
    assert list(doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]) == ["text/plain"]
    assert metrics.headers["content-type"].startswith("text/plain")
    assert options.status_code == 405 and options.headers["allow"] == "GET, HEAD, POST"


def test_body_numbers_with_an_integral_value_are_integers(client):
    assert len(client.post("/generate", json={"count": 3.0, "seed": 7.0}).json()["names"]) == 3
    r = client.post("/generate", json={"count": 2.5})
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "count"


USER_FIELDS = {"logprob", "logprob_per_char", "percentile", "novel", "cut", "exhausted", "attempts", "refused",
               "note", "model", "version", "seed", "requested"}


def undescribed_response_fields(doc) -> tuple[set[str], list[str]]:
    """Every property of every schema a response of the API document reaches (through $ref, arrays and
    unions), and those among them without a description."""
    components = doc["components"]["schemas"]
    seen, fields, missing = set(), set(), []

    def walk(schema, where):
        if "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            if name not in seen:
                seen.add(name)
                walk(components[name], name)
        for key in ("items", "additionalProperties"):
            if isinstance(schema.get(key), dict):
                walk(schema[key], where)
        for key in ("anyOf", "oneOf", "allOf"):
            for part in schema.get(key, []):
                walk(part, where)
        for field, sub in schema.get("properties", {}).items():
            fields.add(field)
            if not sub.get("description"):
                missing.append(f"{where}.{field}")
            walk(sub, where)

    for path in doc["paths"].values():
        for operation in path.values():
            for response in operation.get("responses", {}).values():
                for content in response.get("content", {}).values():
                    walk(content.get("schema", {}), "response")
    return fields, missing


def test_every_response_field_is_described_in_the_api_document(trained_registry, settings_for):
    doc, _, _ = doc_for(settings_for(trained_registry))
    fields, missing = undescribed_response_fields(doc)
    assert USER_FIELDS <= fields, f"not reached from any response: {USER_FIELDS - fields}"
    assert missing == [], f"response fields without a description: {missing}"
