"""The house plan of ``shared/`` (docs/architecture.md), enforced: where each module lives and what it may import.

- foundation (``shared/<name>.py``): imports only the foundation;
- ports (``shared/azure``, ``automation``, ``teams``, ``pricing``): the only modules that import
  ``azure.*``, ``requests`` or ``jinja2``; they import the foundation and other ports, never a capability;
- capabilities (``shared/stop``, ``start``, ``warning``, ``exemption``, ``create``): import the
  foundation, ports, their own modules, and another capability only where the domain needs it
  (``DOMAIN_EDGES``); their ``policy.py`` and ``request.py`` are pure: nothing they import, however
  indirectly, reaches an SDK, an HTTP client, a template engine or a capability's orchestration;
- runbooks: the foundation, ``automation/``, ``azure/auth``, ``azure/ml_gateway`` (to build the
  gateway) and their own capability.

Imports inside functions count: a lazy import is still an import.
"""

from __future__ import annotations

import ast
import os
from typing import Dict, Iterable, List, Set, Tuple

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FOUNDATION = {"models", "report", "settings", "tags", "times", "errors", "sections"}
PORTS = {"azure", "automation", "teams", "pricing"}
CAPABILITIES = {"stop", "start", "warning", "exemption", "create"}
RESTRICTED = {"azure", "requests", "jinja2"}
# Cross-capability imports the domain needs: the warning predicts the sweep and offers the
# exemption request's form; the exemption answer predicts whether the CI's own schedule or idle
# shutdown stops it before the exemption ends. Nothing else.
DOMAIN_EDGES = {("warning", "stop"), ("warning", "exemption"), ("exemption", "stop")}
RUNBOOK_CAPABILITY = {
    "stop_compute_instances": "stop",
    "start_compute_instances": "start",
    "warn_before_stop": "warning",
    "handle_exemption_request": "exemption",
    "create_compute_instance": "create",
}
RUNBOOK_PORT_MODULES = {"shared.azure.auth", "shared.azure.ml_gateway"}


def module_name(path: str) -> str:
    rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
    return rel[: -len(".__init__")] if rel.endswith(".__init__") else rel


def python_files(folder: str) -> List[str]:
    out = []
    for dirpath, _, files in os.walk(os.path.join(ROOT, folder)):
        if "__pycache__" in dirpath:
            continue
        out += [os.path.join(dirpath, f) for f in files if f.endswith(".py")]
    return sorted(out)


def _executed_at_import(tree: ast.Module) -> Iterable[ast.AST]:
    """The nodes that run when the module is imported: not function bodies, not ``if TYPE_CHECKING:``."""
    todo: List[ast.AST] = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            todo += node.orelse
            continue
        yield node
        todo += list(ast.iter_child_nodes(node))


def imports_of(source: str, module: str, *, runtime_only: bool = False) -> Set[str]:
    """Every module ``source`` imports (``from shared.azure import bulk`` → ``shared.azure.bulk``),
    lazy ones inside functions included; with ``runtime_only``, only what importing the module
    itself executes (no function bodies, nothing under ``if TYPE_CHECKING:``)."""
    tree = ast.parse(source)
    found: Set[str] = set()
    for node in _executed_at_import(tree) if runtime_only else ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import: resolve against this module's package
                package = module.split(".")[: -node.level]
                base = ".".join(package + ([base] if base else []))
            found.add(base)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                if os.path.exists(os.path.join(ROOT, *candidate.split(".")) + ".py"):
                    found.add(candidate)  # "from shared.azure import bulk" imports the module shared.azure.bulk
    return found


def kind(module: str) -> Tuple[str, str]:
    """(kind, room) of a module: ("foundation", name), ("port", folder), ("capability", folder), ("runbook", name)."""
    parts = module.split(".")
    if parts[0] == "runbooks":
        return "runbook", parts[-1]
    if len(parts) == 2 and parts[1] in FOUNDATION:
        return "foundation", parts[1]
    if len(parts) >= 2 and parts[1] in PORTS:
        return "port", parts[1]
    if len(parts) >= 2 and parts[1] in CAPABILITIES:
        return "capability", parts[1]
    if module == "shared":
        return "package", "shared"
    return "unknown", module


def violations(module: str, imported: Iterable[str]) -> List[str]:
    """What ``module`` may not import, among ``imported`` (one message per breach)."""
    k, room = kind(module)
    out = []
    for target in sorted(imported):
        top = target.split(".")[0]
        if top in RESTRICTED:
            if k != "port":
                out.append(f"{module} imports {target}: only ports (shared/{{{','.join(sorted(PORTS))}}}) may import {top}")
            continue
        if top != "shared" or target == "shared":
            continue
        tk, troom = kind(target)
        if tk == "package":
            continue
        if k == "foundation" and tk != "foundation":
            out.append(f"{module} imports {target}: the foundation imports only itself")
        elif k == "port" and tk == "capability":
            out.append(f"{module} imports {target}: a port never imports a capability")
        elif k == "capability" and tk == "capability" and troom != room and (room, troom) not in DOMAIN_EDGES:
            out.append(f"{module} imports {target}: {room} may not import the {troom} capability (allowed: {sorted(DOMAIN_EDGES)})")
        elif k == "runbook":
            own = RUNBOOK_CAPABILITY.get(room)
            port_ok = tk == "port" and (troom == "automation" or target in RUNBOOK_PORT_MODULES)
            if not (tk == "foundation" or port_ok or (tk == "capability" and troom == own)):
                out.append(f"{module} imports {target}: a runbook imports the foundation, automation/, azure/auth, azure/ml_gateway and {own}/")
        elif tk == "unknown":
            out.append(f"{module} imports {target}, which is in no room of the house plan")
    return out


def all_modules() -> Dict[str, str]:
    out = {}
    for path in python_files("shared") + python_files("runbooks"):
        with open(path, encoding="utf-8") as fh:
            out[module_name(path)] = fh.read()
    return out


MODULES = all_modules()


def test_every_module_of_shared_lives_in_a_room_of_the_plan():
    misplaced = [m for m in MODULES if kind(m)[0] == "unknown"]
    assert not misplaced, f"modules outside the plan (foundation file, port folder or capability folder): {misplaced}"
    entries = {e for e in os.listdir(os.path.join(ROOT, "shared")) if e not in ("__pycache__", "adaptive_cards")}
    expected = {f"{n}.py" for n in FOUNDATION} | PORTS | CAPABILITIES | {"__init__.py"}
    assert entries == expected, f"`ls shared/` should answer where things live; unexpected: {sorted(entries - expected)}, missing: {sorted(expected - entries)}"


def test_each_capability_has_the_same_inner_names():
    for room in CAPABILITIES:
        names = set(os.listdir(os.path.join(ROOT, "shared", room)))
        assert {"policy.py", "run.py", "__init__.py"} <= names, f"shared/{room}/ needs policy.py (pure) and run.py (orchestration)"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_follow_the_house_rules(module):
    assert violations(module, imports_of(MODULES[module], module)) == []


def _runtime_closure(start: str) -> Set[str]:
    seen: Set[str] = set()
    todo = [start]
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        seen.add(mod)
        if mod in MODULES:
            todo += [t for t in imports_of(MODULES[mod], mod, runtime_only=True) if t.split(".")[0] in {"shared"} | RESTRICTED]
    return seen


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.endswith((".policy", ".request")) and kind(m)[0] == "capability"))
def test_policy_and_request_modules_are_pure(module):
    reached = _runtime_closure(module) - {module}
    impure = sorted(m for m in reached if m.split(".")[0] in RESTRICTED or m.endswith(".run") or kind(m) in {("port", "azure"), ("port", "automation")})
    assert not impure, f"{module} must be pure (no I/O), but importing it reaches {impure}"


def test_the_checker_catches_each_kind_of_breach():
    # The rules above are only as good as this checker: each breach must be reported.
    assert violations("shared.tags", {"shared.azure.errors"})
    assert violations("shared.stop.policy", {"azure.core.exceptions"})
    assert violations("shared.azure.discovery", {"shared.stop.run"})
    assert violations("shared.start.run", {"shared.stop.run"})
    assert violations("runbooks.stop_compute_instances", {"shared.exemption.run"})
    assert violations("runbooks.stop_compute_instances", {"shared.azure.tag_writer"})
    assert not violations("shared.warning.run", {"shared.stop.run", "shared.azure.discovery", "shared.models"})
    assert not violations("runbooks.stop_compute_instances", {"shared.stop.run", "shared.automation.output", "shared.azure.auth", "shared.errors"})
    assert imports_of("from shared.azure import bulk\n", "shared.stop.run") >= {"shared.azure", "shared.azure.bulk"}
    assert imports_of("def f():\n    import requests\n", "shared.models") == {"requests"}
    assert imports_of("if TYPE_CHECKING:\n    import requests\n", "shared.models", runtime_only=True) == set()
    assert imports_of("def f():\n    import requests\n", "shared.models", runtime_only=True) == set()
    assert imports_of("try:\n    import requests\nexcept ImportError:\n    pass\n", "shared.models", runtime_only=True) == {"requests"}


def test_the_rules_are_written_where_a_newcomer_looks():
    texts = []
    for path in (("shared", "__init__.py"), ("docs", "architecture.md")):
        with open(os.path.join(ROOT, *path), encoding="utf-8") as fh:
            texts.append(fh.read())
    for text in texts:
        for room in sorted(PORTS | CAPABILITIES):
            assert f"{room}/" in text, f"the house plan should name {room}/"
