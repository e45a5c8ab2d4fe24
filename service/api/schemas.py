"""Request and response bodies. Limits that depend on settings or on the loaded model (count and
max_length maxima, the vocabulary, top_k's maximum) are checked in service/api/parsing.py, with the same
422 error shape naming the field."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SEED_LIMIT = 2 ** 63


INTEGERS = ("count", "seed", "top_k", "max_length")


class ModelChoice(BaseModel):
    """Which model, and which of its published versions, a request runs on."""

    model: str | None = Field(None, min_length=1, description="a model name of the registry (GET /models "
                                                              "lists them); default: the service's default model")
    version: str | None = Field(None, min_length=1, description="a published version of that model, served "
                                                                "exactly whatever is published later; default: "
                                                                "its CURRENT")


class ModelQuery(ModelChoice):
    """`model` and `version` as query parameters (GET /model, /model/card); nothing else."""

    model_config = ConfigDict(extra="forbid")


class GenerateRequest(ModelChoice):
    """POST /generate body (strict JSON types; unknown fields are rejected)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    count: int = Field(1, ge=1, description="names to generate, 1..NAMEGEN_MAX_COUNT (default 1000)")
    seed: int | None = Field(
        None, ge=0, lt=SEED_LIMIT,
        description="0 <= seed < 2**63. Name i of a request uses the random stream (seed, i), so the "
                    "first k names of count=n equal count=k with the same seed. Drawn and returned when absent.")
    temperature: float = Field(
        1.0, gt=0, le=10, allow_inf_nan=False,
        description="divides the log-probabilities before sampling: < 1 sharper, > 1 flatter")
    top_k: int | None = Field(
        None, ge=1, description="sample only among the k most likely characters (1..vocabulary size; "
                                "characters tied with the k-th are kept)")
    prefix: str = Field(
        "", description="every name starts with this text (characters from the model's vocabulary, "
                        "shorter than max_length); generation continues after it")
    max_length: int | None = Field(
        None, ge=1, description="longest name in characters, prefix included (default 32, at most "
                                "NAMEGEN_MAX_LENGTH); a name that reaches it without ending is returned with cut=true")
    novel_only: bool = Field(
        False, description="skip names found in the training corpus, trying further streams "
                           "(at most 20 x count); may return fewer names, then exhausted=true")

    @model_validator(mode="before")
    @classmethod
    def integral_numbers(cls, data: Any) -> Any:
        """JSON has one number type: 5.0 is the integer 5 (JSON Schema agrees); 5.5 stays an error."""
        if isinstance(data, dict) and any(isinstance(data.get(k), float) for k in INTEGERS):
            data = {k: int(v) if k in INTEGERS and isinstance(v, float) and v.is_integer() else v
                    for k, v in data.items()}
        return data


class GenerateQuery(GenerateRequest):
    """GET /generate query parameters: the same fields, parsed from text."""

    model_config = ConfigDict(extra="forbid", strict=False)


class ModelRef(BaseModel):
    name: str
    version: str


class GeneratedName(BaseModel):
    name: str
    logprob: float = Field(description="natural log of the model's probability (temperature 1, no top_k) "
                                       "of the whole name: each character, prefix included, then the end; "
                                       "for a cut name the characters only")
    novel: bool = Field(description="absent from the training corpus")
    cut: bool = Field(description="reached max_length before the model ended the name")


class GenerateResponse(BaseModel):
    model: ModelRef
    seed: int
    requested: int
    exhausted: bool = Field(description="novel_only found fewer names than requested within its attempts")
    names: list[GeneratedName]


class ScoreRequest(ModelChoice):
    model_config = ConfigDict(extra="forbid", strict=True)

    names: list[str] = Field(min_length=1, description="names to score (characters from the vocabulary, "
                                                       "no '.', at most NAMEGEN_MAX_LENGTH each)")
    per_char: bool = Field(True, description="include each character's log-probability (false: totals only, "
                                             "a much smaller answer)")


class CharScore(BaseModel):
    char: str = Field(description="the character, or '.' for the end of the name")
    logprob: float


class NameScore(BaseModel):
    name: str
    logprob: float = Field(description="sum of per_char: log-probability of the name, end included")
    in_corpus: bool
    per_char: list[CharScore] | None = Field(None, description="each character, then '.'; absent when "
                                                               "the request set per_char to false")


class ScoreResponse(BaseModel):
    model: ModelRef
    scores: list[NameScore]


class ErrorItem(BaseModel):
    field: str | None = Field(description="the offending field (dotted for nested), or null")
    message: str
    loc: list[str | int] = []


class ErrorResponse(BaseModel):
    detail: list[ErrorItem]


class ReloadState(BaseModel):
    refused: str | None = Field(description="a newer version CURRENT names that was refused (the served one "
                                            "stays), or null")
    reason: str | None = Field(description="why, as a code: files_missing, checksum_mismatch, probe_mismatch, "
                                           "self_test_failed, graph_invalid, manifest_invalid, files_unreadable, "
                                           "bad_pointer, load_failed; details are in the service's log")


class ModelStatus(BaseModel):
    name: str
    default: bool = Field(description="requests without `model` run on it")
    version: str | None = Field(description="the version its CURRENT serves, or null while none is loaded")
    state: str = Field(description="ready, loading, or a reason code as in ReloadState")
    loaded: list[str] = Field(description="versions loaded in this worker: the current one, then pinned ones")
    reload: ReloadState


class ModelsResponse(BaseModel):
    models: list[ModelStatus]


class ReadyResponse(BaseModel):
    status: Literal["ready"]
    model: ModelRef
    reload: ReloadState
    models: list[ModelStatus] = Field(description="every model's state (the service is ready when the "
                                                  "default model is)")


class NotReadyResponse(ErrorResponse):
    reason: str = Field(description="loading, no_model_published, or a refusal code as in ReloadState")
    version: str | None = Field(description="the version that was refused, if any")
    models: list[ModelStatus] = []


class ProtocolErrorResponse(BaseModel):
    """The Open Inference Protocol's error object."""

    error: str
