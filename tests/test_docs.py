"""The docs match the code: every module of service/, training/ and artifact/ is listed in
docs/interfaces.md or docs/service.md, and every service setting in docs/interfaces.md. Both lists
come from the code, so a new module or setting fails here until its line is written."""
import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = {name: (ROOT / "docs" / name).read_text(encoding="utf-8") for name in ("interfaces.md", "service.md")}
PACKAGES = ("service", "training", "artifact")


def modules() -> list[str]:
    """Every module of the packages as a dotted name (package __init__ files aside)."""
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.name != "__init__.py":
                found.append(".".join(path.relative_to(ROOT).with_suffix("").parts))
    return found


def settings_fields() -> list[str]:
    """The fields of service.settings.Settings, read from its source (annotated names of the class)."""
    tree = ast.parse((ROOT / "service" / "settings.py").read_text(encoding="utf-8"))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Settings")
    return [n.target.id for n in cls.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)
            and n.target.id != "model_config"]


def test_the_lists_come_from_the_code():
    assert {"training.cli", "artifact.manifest", "service.settings", "artifact.__main__"} <= set(modules())
    assert {"model_dir", "port", "log_format"} <= set(settings_fields())


@pytest.mark.parametrize("module", modules())
def test_every_module_is_listed_in_the_docs(module):
    path = module.replace(".", "/") + ".py"
    dotted = re.compile(rf"(?<![\w.]){re.escape(module)}(?![\w])")
    # docs/service.md's layout table names the service's modules from inside the package (`core/engine.py`)
    inside = re.compile(rf"`{re.escape(path.split('/', 1)[-1])}`") if module.startswith("service.") else None
    assert any(dotted.search(text) or path in text for text in DOCS.values()) \
        or (inside is not None and inside.search(DOCS["service.md"])), \
        f"{module} ({path}) is in neither docs/interfaces.md nor docs/service.md"


@pytest.mark.parametrize("field", settings_fields())
def test_every_service_setting_is_listed_in_the_interfaces_doc(field):
    variable = f"NAMEGEN_{field.upper()}"
    assert re.search(rf"\b{variable}\b", DOCS["interfaces.md"]), f"{variable} is not in docs/interfaces.md"


def service_doc_defaults() -> dict[str, str]:
    """NAMEGEN_X -> the default cell of docs/service.md's settings table (a row may name two settings)."""
    found = {}
    for line in DOCS["service.md"].splitlines():
        cells = [c.strip() for c in line.split("|")[1:-1]]
        if len(cells) >= 2 and cells[0].startswith("`NAMEGEN_"):
            names = re.findall(r"`(NAMEGEN_\w+)`", cells[0])
            defaults = [d.strip().strip("`") for d in cells[1].split(",")] if len(names) > 1 else [cells[1].strip("`")]
            found.update(zip(names, defaults))
    return found


def documented_default(value) -> str:
    """How docs/service.md writes a code default: 5.0 as 5, None as none, '' as empty, a path as text."""
    if value is None:
        return "none"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value) if str(value) else "empty"


@pytest.mark.parametrize("field", settings_fields())
def test_every_setting_is_in_the_service_doc_with_the_codes_default(field):
    from service.settings import Settings

    variable = f"NAMEGEN_{field.upper()}"
    table = service_doc_defaults()
    assert variable in table, f"{variable} is not in docs/service.md's settings table"
    default = Settings.model_fields[field].default
    if field == "workers":  # computed at start: the machine's cores
        assert table[variable] == "number of cores"
    else:
        assert table[variable] == documented_default(default), f"{variable}: docs say {table[variable]!r}"
