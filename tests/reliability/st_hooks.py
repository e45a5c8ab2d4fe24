"""schemathesis hooks for test_schema_fuzz.py (loaded through SCHEMATHESIS_HOOKS). The filter drops one
named kind of failure, narrowly, and the run reports how many it dropped ("filtered")."""
import schemathesis

DEFAULT_MAX_LENGTH = 32


def as_integer(value) -> int | None:
    """A query's text or a body's number (5.0 is 5, as the service reads it), else None."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if number.is_integer() else None


@schemathesis.hook
def filter_failure(context, failure, case, response) -> bool:
    """Keep every failure but one: `prefix` must be shorter than `max_length`, a rule between two
    fields that OpenAPI cannot state, so a generator sees such requests as valid; the service's 422
    names the rule."""
    if response.status_code == 422 and case.operation.path == "/generate":
        params = {**(case.query or {}), **(case.body if isinstance(case.body, dict) else {})}
        prefix, max_length = params.get("prefix"), params.get("max_length") or DEFAULT_MAX_LENGTH
        max_length = as_integer(max_length)
        detail = response.json().get("detail", [])
        if isinstance(prefix, str) and max_length is not None and len(prefix) >= max_length \
                and [d.get("field") for d in detail] == ["prefix"] \
                and detail[0]["message"].startswith("must be shorter than max_length"):
            return False
    return True
