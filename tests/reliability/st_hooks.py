"""schemathesis hooks for test_schema_fuzz.py (loaded through SCHEMATHESIS_HOOKS). The filter drops two
named kinds of failure, narrowly, and the run reports how many it dropped ("filtered")."""
import schemathesis

DEFAULT_MAX_LENGTH = 32


def as_integer(value) -> int | None:
    """A query's text or a body's number (5.0 is 5, as the service reads it), else None."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if number.is_integer() else None


RELATIONS = ("must be shorter than max_length", "must be at most max_length", "must be <= max_length")


@schemathesis.hook
def filter_failure(context, failure, case, response) -> bool:
    """Keep every failure but two kinds: a text or min_length measured against `max_length` (prefix
    shorter than it; suffix, contains and min_length at most it), rules between two fields that
    OpenAPI cannot state, so a generator sees such requests as valid (the service's 422 names each);
    and a body over NAMEGEN_MAX_BODY_BYTES, which the schema cannot state either (a 413)."""
    # a long `exclude` list of escaped characters: the body limit, measured by the server, refuses it first
    if response.status_code == 413 and response.json()["detail"][0]["message"].startswith("request body larger than"):
        return False
    if response.status_code == 422 and case.operation.path == "/generate":
        params = {**(case.query or {}), **(case.body if isinstance(case.body, dict) else {})}
        max_length = as_integer(params.get("max_length") or DEFAULT_MAX_LENGTH)
        detail = response.json().get("detail", [])
        if max_length is not None and detail and all(
                d.get("field") in ("prefix", "suffix", "contains", "min_length")
                and d["message"].startswith(RELATIONS) and longer(params.get(d["field"]), max_length, d["field"])
                for d in detail):
            return False
    return True


def longer(value, max_length: int, field: str) -> bool:
    """The value breaks its rule against max_length (so the 422 is right)."""
    if field == "min_length":
        number = as_integer(value)
        return number is not None and number > max_length
    return isinstance(value, str) and len(value) >= max_length + (field != "prefix")
