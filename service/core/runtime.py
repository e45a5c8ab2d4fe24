"""The model seam: what the engine needs from a loaded model, and the onnxruntime adapter for it.

The engine sees a `Runtime`: a vocabulary, a block size and one call from contexts to logits.
Nothing else of onnxruntime (or of any other framework) crosses this seam, so a test or another
backend can stand in for the ONNX session.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np

from artifact.loader import LoadedModel


class Runtime(Protocol):
    vocab: str  # index 0 is '.', the start padding and the end of a name
    block_size: int  # characters of context per row

    def run(self, contexts: np.ndarray) -> np.ndarray:
        """(n, block_size) int64 character ids -> (n, len(vocab)) float32 logits, each row computed
        the same way whatever else is in the batch."""
        ...


class OnnxRuntime:
    """A validated artifact's onnxruntime session as a Runtime."""

    def __init__(self, model: LoadedModel):
        self.vocab = model.vocab
        self.block_size = int(model.block_size)
        self._run = model.session.run
        self._output = [model.session.get_outputs()[0].name]
        self._input = model.session.get_inputs()[0].name

    def run(self, contexts: np.ndarray) -> np.ndarray:
        return self._run(self._output, {self._input: contexts})[0]
