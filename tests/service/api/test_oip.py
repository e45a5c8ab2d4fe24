"""The Open Inference Protocol: a real protocol client (tritonclient) and httpx against a real
server; logits equal onnxruntime's on the same graph; errors in the protocol's shape and codes."""
import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from service_helpers import NAME, SHIPPED, add_model
from tritonclient.utils import InferenceServerException

from artifact.loader import load_version
from artifact.registry import current_version, version_path

OLD = sorted(p.name for p in SHIPPED.iterdir() if p.is_dir())[0]


@pytest.fixture(scope="module")
def server(trained_registry, tmp_path_factory):
    """One real server for the module: the trained model (the default) and the shipped one."""
    import shutil

    from service_helpers import Server, wait_until
    registry = tmp_path_factory.mktemp("oip") / "models"
    shutil.copytree(trained_registry, registry)
    add_model(registry, "shipped")
    s = Server({"NAMEGEN_MODEL_DIR": str(registry), "NAMEGEN_MODEL_NAME": NAME, "NAMEGEN_RELOAD_INTERVAL": "0",
                "NAMEGEN_LOG_FORMAT": "json"}, tmp_path_factory.mktemp("oip-log") / "server.log")
    s.registry = registry
    wait_until(lambda: httpx.get(f"{s.url}/v2/models/shipped/ready").status_code == 200, timeout=60,
               ignore=(httpx.HTTPError,))
    yield s
    s.stop()


def session_logits(registry, name, version, contexts):
    """onnxruntime on the same graph, outside the service."""
    return load_version(version_path(registry, name, version)).logits(contexts)


def contexts(n, block_size, vocab_size, seed=0):
    return np.random.default_rng(seed).integers(0, vocab_size, size=(n, block_size), dtype=np.int64)


def test_a_real_protocol_client_gets_onnxruntimes_logits(server):
    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready()
    assert client.get_server_metadata()["name"] == "namegen"
    assert client.is_model_ready(NAME) and client.is_model_ready("shipped")
    meta = client.get_model_metadata(NAME)
    version = current_version(server.registry, NAME)
    bs, vocab = meta["inputs"][0]["shape"][1], meta["outputs"][0]["shape"][1]
    assert meta["inputs"] == [{"name": "context", "datatype": "INT64", "shape": [-1, bs]}]
    assert meta["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": [-1, vocab]}]
    assert version in meta["versions"]
    x = contexts(16, bs, vocab)
    expected = session_logits(server.registry, NAME, version, x)  # (16, V) float32
    for binary in (False, True):  # JSON tensors, then the binary tensor extension
        given = triton.InferInput("context", list(x.shape), "INT64")
        given.set_data_from_numpy(x, binary_data=binary)
        result = client.infer(NAME, [given], outputs=[triton.InferRequestedOutput("logits", binary_data=binary)],
                              request_id="r1")
        got = result.as_numpy("logits")
        assert got.dtype == np.float32 and np.array_equal(got, expected)
        response = result.get_response()
        assert (response["model_name"], response["model_version"], response["id"]) == (NAME, version, "r1")
    client.close()


def test_a_pinned_version_through_the_client(server):
    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    meta = client.get_model_metadata("shipped", model_version=OLD)
    x = contexts(5, meta["inputs"][0]["shape"][1], meta["outputs"][0]["shape"][1], seed=1)
    given = triton.InferInput("context", list(x.shape), "INT64")
    given.set_data_from_numpy(x)
    result = client.infer("shipped", [given], model_version=OLD)
    assert result.get_response()["model_version"] == OLD
    assert np.array_equal(result.as_numpy("logits"), session_logits(server.registry, "shipped", OLD, x))
    with pytest.raises(InferenceServerException) as e:
        client.infer("nope", [given])
    assert e.value.status() == "404" and "known models" in e.value.message()
    with pytest.raises(InferenceServerException) as e:
        client.infer("shipped", [given], model_version="20990101T000000Z-000000")
    assert e.value.status() == "404" and "not in the registry" in e.value.message()
    client.close()


def test_nested_json_data_and_several_requests_at_once(server):
    import asyncio

    version = current_version(server.registry, NAME)
    meta = httpx.get(f"{server.url}/v2/models/{NAME}").json()
    bs, vocab = meta["inputs"][0]["shape"][1], meta["outputs"][0]["shape"][1]
    batches = [contexts(n, bs, vocab, seed=n) for n in (1, 3, 16, 7)]

    async def all_at_once():
        async with httpx.AsyncClient(base_url=server.url) as c:
            return await asyncio.gather(*[c.post(f"/v2/models/{NAME}/infer", json={"inputs": [
                {"name": "context", "datatype": "INT64", "shape": list(x.shape), "data": x.tolist()}]})
                for x in batches])
    for x, r in zip(batches, asyncio.run(all_at_once())):
        assert r.status_code == 200
        out = r.json()["outputs"][0]
        assert out["name"] == "logits" and out["datatype"] == "FP32" and out["shape"] == [len(x), vocab]
        got = np.array(out["data"], dtype=np.float32).reshape(out["shape"])
        assert np.array_equal(got, session_logits(server.registry, NAME, version, x))


@pytest.mark.parametrize("body, status, words", [
    ({"inputs": [{"name": "context", "datatype": "INT64", "shape": [1, 2], "data": [0, 0]}]}, 400, "shape"),
    ({"inputs": [{"name": "context", "datatype": "FP32", "shape": [1, 3], "data": [0, 0, 0]}]}, 400, "INT64"),
    ({"inputs": [{"name": "x", "datatype": "INT64", "shape": [1, 3], "data": [0, 0, 0]}]}, 400, "context"),
    ({"inputs": []}, 400, "exactly one input"),
    ({"inputs": [{"name": "context", "datatype": "INT64", "shape": [1, "B"], "data": [0]}]}, 400, "shape"),
    ({"inputs": [{"name": "context", "datatype": "INT64", "shape": [1, "B"], "data": [99] * 8}]}, 400, "0.."),
    ({"inputs": [{"name": "context", "datatype": "INT64", "shape": [1, "B"], "data": [0.5] * 8}]}, 400, "integers"),
    ({"inputs": [{"name": "context", "datatype": "INT64", "shape": [1, "B"], "data": [0] * 8}],
      "outputs": [{"name": "probs"}]}, 400, "logits"),
])
def test_bad_infer_requests_get_the_protocols_error_object(server, body, status, words):
    bs = httpx.get(f"{server.url}/v2/models/{NAME}").json()["inputs"][0]["shape"][1]
    for tensor in body["inputs"]:
        tensor["shape"] = [bs if d == "B" else d for d in tensor["shape"]]
        if tensor["name"] == "context" and tensor["shape"] == [1, bs] and len(tensor["data"]) == 8:
            tensor["data"] = tensor["data"][:1] * bs
    r = httpx.post(f"{server.url}/v2/models/{NAME}/infer", json=body)
    assert r.status_code == status and set(r.json()) == {"error"} and words in r.json()["error"]
    r = httpx.post(f"{server.url}/v2/models/{NAME}/infer", content=b"{not json")
    assert r.status_code == 400 and "JSON" in r.json()["error"]


def test_health_metadata_and_readiness_paths(server):
    assert httpx.get(f"{server.url}/v2/health/live").status_code == 200
    assert httpx.get(f"{server.url}/v2/health/ready").json() == {"ready": True}
    assert "binary_tensor_data" in httpx.get(f"{server.url}/v2").json()["extensions"]
    assert httpx.get(f"{server.url}/v2/models/shipped/versions/{OLD}/ready").json()["version"] == OLD
    r = httpx.get(f"{server.url}/v2/models/nope")
    assert r.status_code == 404 and "known models" in r.json()["error"]


def test_the_generate_extension_answers_as_generate(server):
    params = {"count": 5, "seed": 9, "temperature": 0.7, "max_length": 12}
    r = httpx.post(f"{server.url}/v2/models/shipped/generate", json={"text_input": "ma", "parameters": params})
    direct = httpx.post(f"{server.url}/generate", json={**params, "prefix": "ma", "model": "shipped"}).json()
    assert r.status_code == 200
    assert r.json()["names"] == [n["name"] for n in direct["names"]]
    assert r.json()["text_output"] == "\n".join(r.json()["names"])
    assert r.json()["model_version"] == direct["model"]["version"]
    bad = httpx.post(f"{server.url}/v2/models/shipped/generate", json={"parameters": {"count": 0}})
    assert bad.status_code == 400 and "count" in bad.json()["error"]


def test_logits_text_reads_back_as_the_same_float32_values():
    """Every finite float32 (random bit patterns, the extremes, subnormals, signed zero), in any
    layout or byte order, is written as text that a JSON reader's double rounds back to the same
    float32."""
    import json

    from service.api.oip import float_text
    rng = np.random.default_rng(0)
    values = rng.integers(0, 2 ** 32, 200_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    info = np.finfo(np.float32)
    values = np.concatenate([np.array([0.0, -0.0, info.max, -info.max, info.tiny, info.smallest_subnormal,
                                       1e-45, 3.4028235e38], dtype=np.float32), values[np.isfinite(values)]])
    pairs = values[:len(values) // 2 * 2].reshape(-1, 2)[:, ::-1]  # (n, 2), not contiguous
    back = np.array(json.loads(f"[{float_text(pairs)}]"), dtype=np.float64).astype(np.float32)
    expected = pairs.ravel()
    assert float_text(pairs.astype(">f4")) == float_text(pairs)  # another byte order: the same text
    assert back.view(np.uint32).tolist() == expected.view(np.uint32).tolist()
