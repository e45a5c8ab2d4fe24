"""Request and response bodies. Limits that depend on settings or on the loaded model (count and
max_length maxima, the vocabulary, top_k's maximum) are checked in service/api/parsing.py, with the same
422 error shape naming the field."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from service.core.constraints import ATTEMPTS_PER_NAME, MAX_EXCLUDE, SECONDS

SEED_LIMIT = 2 ** 63
EXCLUDED_LENGTH = 40  # characters an excluded name may have: with MAX_EXCLUDE, about 22 KB of body at most
BUDGET = (f"Constrained requests draw further streams, judged in stream order, until {ATTEMPTS_PER_NAME} "
          f"attempts in a row are refused or {SECONDS:g} s have passed; may return fewer names, "
          f"then exhausted=true with the attempts made and the constraint that refused most. "
          f"Letters match without regard to case for a lower-case model.")


INTEGERS = ("count", "seed", "top_k", "max_length", "min_length")


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
    novel_only: bool = Field(False, description="skip names found in the training corpus. " + BUDGET)
    min_length: int | None = Field(None, ge=1, description="shortest name kept, in characters, prefix included "
                                                           "(at most max_length). " + BUDGET)
    suffix: str = Field("", description="keep names ending with this text (characters from the model's "
                                        "vocabulary, at most max_length). " + BUDGET)
    contains: str = Field("", description="keep names containing this text (characters from the model's "
                                          "vocabulary, at most max_length). " + BUDGET)
    exclude: list[Annotated[str, Field(max_length=EXCLUDED_LENGTH)]] = Field(
        [], max_length=MAX_EXCLUDE,
        description=f"names never to return (at most {MAX_EXCLUDE} names of at most {EXCLUDED_LENGTH} characters; "
                    f"in a query, comma-separated). " + BUDGET)
    unique: bool = Field(False, description="no name twice in one answer. " + BUDGET)
    case: Literal["lower", "title"] = Field("lower", description="how names are written: lower (\"emma\") or "
                                                                 "title (\"Emma\")")

    @model_validator(mode="before")
    @classmethod
    def integral_numbers(cls, data: Any) -> Any:
        """JSON has one number type: 5.0 is the integer 5 (JSON Schema agrees); 5.5 stays an error."""
        if isinstance(data, dict) and any(isinstance(data.get(k), float) for k in INTEGERS):
            data = {k: int(v) if k in INTEGERS and isinstance(v, float) and v.is_integer() else v
                    for k, v in data.items()}
        return data


class GenerateQuery(GenerateRequest):
    """GET /generate query parameters: the same fields, parsed from text (exclude comma-separated)."""

    model_config = ConfigDict(extra="forbid", strict=False)

    @model_validator(mode="before")
    @classmethod
    def exclude_list(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("exclude"), str):
            data = {**data, "exclude": [n.strip() for n in data["exclude"].split(",") if n.strip()]}
        return data


class ModelRef(BaseModel):
    name: str = Field(description="the model that answered (the request's `model`, or the default model)")
    version: str = Field(description="the published version that answered: pass it as `version` to get the "
                                     "same names for the same seed later")


class GeneratedName(BaseModel):
    name: str = Field(description="the generated name, written as `case` asks")
    logprob: float = Field(description="natural log of the model's probability (temperature 1, no top_k) "
                                       "of the whole name: each character, prefix included, then the end; "
                                       "for a cut name the characters only")
    logprob_per_char: float = Field(description="logprob divided by the characters it counts (the end included): "
                                                "comparable across lengths")
    percentile: float | None = Field(description="the share (0-100) of the model's own corpus names with a lower "
                                                 "logprob_per_char: how typical the name is; null when the model's "
                                                 "manifest has no typicality quantiles")
    novel: bool = Field(description="absent from the training corpus")
    cut: bool = Field(description="reached max_length before the model ended the name")


class GenerateResponse(BaseModel):
    model: ModelRef = Field(description="the model and version that generated the names")
    seed: int = Field(description="the seed used (the request's, or the one drawn for it): send it back to "
                                  "get the same names")
    requested: int = Field(description="the count asked for; names may hold fewer when exhausted is true")
    exhausted: bool = Field(description="the constraints found fewer names than requested within their budget")
    attempts: int = Field(description="streams judged: the names returned and those refused")
    refused: dict[str, int] = Field(description="per constraint, the attempts it refused (one attempt may fail "
                                                "several)")
    note: str | None = Field(description="when exhausted: the attempts made, which budget ran out and the "
                                         "constraint that refused most")
    names: list[GeneratedName] = Field(description="the names, name i drawn from the random stream (seed, i)")


class ScoreRequest(ModelChoice):
    model_config = ConfigDict(extra="forbid", strict=True)

    names: list[str] = Field(min_length=1, description="names to score (characters from the vocabulary, "
                                                       "no '.', at most NAMEGEN_MAX_LENGTH each)")
    per_char: bool = Field(True, description="include each character's log-probability (false: totals only, "
                                             "a much smaller answer)")


class CharScore(BaseModel):
    char: str = Field(description="the character, or '.' for the end of the name")
    logprob: float = Field(description="natural log of the model's probability of this character after the "
                                       "ones before it")


class NameScore(BaseModel):
    name: str = Field(description="the name as sent")
    logprob: float = Field(description="sum of per_char: log-probability of the name, end included")
    logprob_per_char: float = Field(description="logprob / (characters + 1)")
    percentile: float | None = Field(description="share (0-100) of the corpus names with a lower logprob_per_char; "
                                                 "null without typicality quantiles in the manifest")
    in_corpus: bool = Field(description="the name is in the model's training corpus")
    per_char: list[CharScore] | None = Field(None, description="each character, then '.'; absent when "
                                                               "the request set per_char to false")


class ScoreResponse(BaseModel):
    model: ModelRef = Field(description="the model and version that scored the names")
    scores: list[NameScore] = Field(description="one score per name, in the order sent")


class ErrorItem(BaseModel):
    field: str | None = Field(description="the offending field (dotted for nested), or null")
    message: str = Field(description="what is wrong with it, in words")
    loc: list[str | int] = Field([], description="where: body or query, then the field (and index)")


class ErrorResponse(BaseModel):
    detail: list[ErrorItem] = Field(description="every problem found, each naming its field")


class ReloadState(BaseModel):
    refused: str | None = Field(description="a newer version CURRENT names that was refused (the served one "
                                            "stays), or null")
    reason: str | None = Field(description="why, as a code: files_missing, checksum_mismatch, probe_mismatch, "
                                           "self_test_failed, graph_invalid, manifest_invalid, files_unreadable, "
                                           "bad_pointer, load_failed; details are in the service's log")


class ModelStatus(BaseModel):
    name: str = Field(description="the model's name in the registry (pass it as `model`)")
    default: bool = Field(description="requests without `model` run on it")
    version: str | None = Field(description="the version its CURRENT serves, or null while none is loaded")
    description: str | None = Field(description="the names it learned, in words (e.g. \"girls' names, 2017, "
                                                "18,309 names\"), or null while none is loaded")
    state: str = Field(description="ready, loading, or a reason code as in ReloadState")
    loaded: list[str] = Field(description="versions loaded in this worker: the current one, then pinned ones")
    reload: ReloadState = Field(description="the last reload's refusal, if any")


class ModelsResponse(BaseModel):
    models: list[ModelStatus] = Field(description="every model of the registry")


class ReadyResponse(BaseModel):
    status: Literal["ready"] = Field(description="always ready here (not ready answers 503)")
    model: ModelRef = Field(description="the default model and the version it serves")
    reload: ReloadState = Field(description="the default model's last reload refusal, if any")
    models: list[ModelStatus] = Field(description="every model's state (the service is ready when the "
                                                  "default model is)")


class NotReadyResponse(ErrorResponse):
    reason: str = Field(description="loading, no_model_published, or a refusal code as in ReloadState")
    version: str | None = Field(description="the version that was refused, if any")
    models: list[ModelStatus] = Field([], description="every model's state")


class ProtocolErrorResponse(BaseModel):
    """The Open Inference Protocol's error object."""

    error: str = Field(description="what went wrong, in words")
