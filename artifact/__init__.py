"""The artifact contract between training and serving. No torch here.

A version directory `<registry>/<name>/<version>/` holds model.onnx, manifest.json, names.txt and
report/; `<registry>/<name>/CURRENT` names the served version. See docs/interfaces.md.

Imports go one way: manifest (the format) <- layout (paths, the pointer) <- loader (the model layer:
numpy + onnxruntime) and <- registry (publish, gate, rollback, prune, verify; stdlib only, handed the
loader's self-test by whoever publishes) <- __main__ (the operator's CLI, `python -m artifact`).
"""


class ArtifactError(Exception):
    """Every refusal (bad manifest, checksum, graph, probe, pointer, quality gate), with a clear message."""


__all__ = ["ArtifactError"]
