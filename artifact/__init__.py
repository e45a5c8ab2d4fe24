"""The artifact contract between training and serving: manifest, registry, loader. No torch here.

A version directory `<registry>/<name>/<version>/` holds model.onnx, manifest.json, names.txt and
report/; `<registry>/<name>/CURRENT` names the served version. See docs/interfaces.md.
"""


class ArtifactError(Exception):
    """Every refusal (bad manifest, checksum, graph, probe, pointer, quality gate), with a clear message."""


__all__ = ["ArtifactError"]
