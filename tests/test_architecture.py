"""The architecture, checked: no import cycle among the modules of gateway/, drivers/ and
onss_sim/, and each part of gateway imports only what it may.

What a sub-package may import is the last paragraph of its `__init__.py` docstring,
`May import: models, evidence. Nothing above it.` (or `everything in gateway`, or `the
standard library and third-party packages only`); this test reads it there, so the
docstring is the contract and cannot drift from the code. A top-level module may say it the
same way (gateway/errors.py does, adding `Everything in gateway may import it.`); the others
have their lists in TOP_LEVEL below. Every import counts: at module level, under
TYPE_CHECKING and inside functions. The source is read with `ast`; nothing is imported.
"""

from __future__ import annotations

import ast
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from itertools import pairwise
from pathlib import Path

import pytest

from tests.support import REPO

PACKAGES = ("gateway", "drivers", "onss_sim")
THIS = "tests/test_architecture.py"
EVERYTHING = "everything in gateway"
NOTHING = "the standard library and third-party packages only"

# The gateway modules that are not sub-packages, with what each may import of gateway and
# drivers. The tap path's modules sit low; the daemon, which assembles everything, on top.
# `everything in gateway` includes drivers, which gateway sits on, never onss_sim.
TOP_LEVEL: dict[str, tuple[str, ...] | str] = {
    "models": (),
    "uuid7": (),
    "identifiers": ("models",),
    "clock": ("models",),
    "badges": ("models", "identifiers"),
    "attendance": ("models", "uuid7", "drivers"),
    "readers": ("models", "config", "drivers"),
    "tap": ("models", "clock", "attendance", "badges", "journal", "feedback", "drivers"),
    "watch": ("models", "clock", "journal", "evidence", "drivers"),
    "daemon": EVERYTHING,
    "__main__": ("cli",),
}
# Outside gateway: the readers know nothing of the gateway, and the simulator is a separate
# program (tests, benchmarks and the demo start it as a process); it checks Checkinatwork
# signatures with checkinatwork.security.verify, the receiving side's half of WS-Security.
OTHER_PACKAGES: dict[str, tuple[str, ...]] = {"drivers": (), "onss_sim": ("checkinatwork",)}


@dataclass(frozen=True)
class Import:
    source: str  # the importing module, dotted
    target: str  # the first-party module it runs: a submodule, or a package's __init__
    path: Path
    line: int
    statement: str  # the names taken from this target: `from gateway.cli import render`
    where: str  # "", "under TYPE_CHECKING" or "in function f"

    def __str__(self) -> str:
        where = f"  ({self.where})" if self.where else ""
        return f"{self.path.relative_to(REPO)}:{self.line}: {self.statement}{where}"


@cache
def modules() -> dict[str, Path]:
    """Every first-party module by dotted name; a package is its __init__.py."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _resolve(dotted: str) -> str | None:
    """The first-party module `import dotted` runs last: the longest known prefix."""
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        name = ".".join(parts[:end])
        if name in modules():
            return name
    return None


def _base(source: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = source if modules()[source].name == "__init__.py" else source.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def _targets(source: str, node: ast.Import | ast.ImportFrom) -> Iterator[tuple[str, str]]:
    """(module named, statement) for each module one import statement runs; the names a
    `from` statement takes from the same module are written together."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name, f"import {alias.name}"
        return
    base = _base(source, node)
    names: dict[str, list[str]] = {}
    for alias in node.names:
        submodule = f"{base}.{alias.name}"
        names.setdefault(submodule if submodule in modules() else base, []).append(alias.name)
    for target, taken in names.items():
        listed = ", ".join(taken[:3]) + (", ..." if len(taken) > 3 else "")
        yield target, f"from {'.' * node.level}{node.module or ''} import {listed}"


def _walk(node: ast.AST, where: str = "") -> Iterator[tuple[ast.Import | ast.ImportFrom, str]]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child, where
        inner = where
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) and not where:
            inner = f"in function {child.name}"
        elif isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
            inner = where or "under TYPE_CHECKING"
        yield from _walk(child, inner)


@cache
def imports() -> tuple[Import, ...]:
    """Every import of a first-party module by a first-party module."""
    found: list[Import] = []
    for source, path in modules().items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node, where in _walk(tree):
            for dotted, statement in _targets(source, node):
                target = _resolve(dotted)
                if target is not None and target != source:
                    found.append(Import(source, target, path, node.lineno, statement, where))
    return tuple(found)


# --- cycles ----------------------------------------------------------------------------------


def _components(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph[node]):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _path(graph: dict[str, set[str]], start: str, goal: str, within: set[str]) -> list[str]:
    """A shortest import chain from start to goal inside one component."""
    previous: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        if node == goal:
            chain = [node]
            while chain[-1] != start:
                chain.append(previous[chain[-1]])
            return chain[::-1]
        for successor in sorted(graph[node] & within):
            if successor not in previous and successor != start:
                previous[successor] = node
                queue.append(successor)
    raise AssertionError(f"no path from {start} to {goal}")


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in modules()}
    for edge in imports():
        graph[edge.source].add(edge.target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """For every import inside a cycle, the shortest cycle through it (each cycle once,
    starting at its smallest module): cutting the imports of all of them breaks every
    cycle."""
    found: dict[tuple[str, ...], list[str]] = {}
    for component in _components(graph):
        for source in sorted(component):
            for target in sorted(graph[source] & component):
                loop = [source, *_path(graph, target, source, component)]
                start = loop.index(min(loop[:-1]))
                rotated = loop[start:-1] + loop[:start] + [loop[start]]
                found.setdefault(tuple(rotated), rotated)
    return sorted(found.values())


def describe(cycle: list[str]) -> str:
    lines = [" -> ".join(cycle)]
    for step in pairwise(cycle):
        lines += [f"    {edge}" for edge in imports() if (edge.source, edge.target) == step]
    return "\n".join(lines)


def test_no_import_cycle() -> None:
    found = cycles(import_graph())
    if found:
        pytest.fail(
            f"{len(found)} import cycle(s), each with the imports that make it:\n"
            + "\n".join(map(describe, found)),
            pytrace=False,
        )


# --- layers ----------------------------------------------------------------------------------


def _part(module: str) -> str:
    """The part of the code a module belongs to: `journal` for gateway.journal.store,
    `models` for gateway.models, the package itself outside gateway."""
    parts = module.split(".")
    if parts[0] != "gateway":
        return parts[0]
    return parts[1] if len(parts) > 1 else ""


def parts() -> set[str]:
    return {_part(name) for name in modules()} - {""}


def _sub_packages() -> list[str]:
    return sorted(
        name.split(".")[1]
        for name, path in modules().items()
        if name.count(".") == 1 and name.startswith("gateway.") and path.name == "__init__.py"
    )


@dataclass(frozen=True)
class Rule:
    may_import: tuple[str, ...] | str  # parts, or EVERYTHING
    open_to_all: bool  # "Everything in gateway may import it." (the error hierarchy)
    written_in: str


def parse_contract(text: str) -> tuple[tuple[str, ...] | str, bool]:
    """What follows `May import: `, read: `models, identifiers and clock. Nothing above
    it.` -> the parts named; `everything in gateway...` -> EVERYTHING; `the standard
    library...` -> nothing. A sentence `Everything in gateway may import it.` opens the part
    to all."""
    open_to_all = "everything in gateway may import it" in text.lower()
    if text.startswith(EVERYTHING):
        return EVERYTHING, open_to_all
    if text.startswith("the standard library"):
        return (), open_to_all
    listed = text.split(".")[0].split(";")[0].replace(" and ", ", ")
    return tuple(name.strip() for name in listed.split(",") if name.strip()), open_to_all


def _contract(path: Path) -> str | None:
    """The docstring's last paragraph, when it says what the module may import."""
    docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    last = " ".join(docstring.strip().split("\n\n")[-1].split())
    return last.removeprefix("May import: ") if last.startswith("May import: ") else None


def _rule(part: str) -> Rule | str:
    """A part's rule, or what is wrong with where it is written."""
    if part in OTHER_PACKAGES:
        return Rule(OTHER_PACKAGES[part], False, f"OTHER_PACKAGES in {THIS}")
    path = modules()[f"gateway.{part}"]
    where = str(path.relative_to(REPO))
    text = _contract(path)
    if part in _sub_packages() and text is None:
        return (
            f"{where}: its docstring must end with a paragraph 'May import: a, b, c. Nothing"
            f" above it.' (or '{EVERYTHING}', or '{NOTHING}')"
        )
    if text is not None and part in TOP_LEVEL:
        return f"{where} says what it may import: take {part} out of TOP_LEVEL in {THIS}"
    if text is not None:
        return Rule(*parse_contract(text), where)
    if part in TOP_LEVEL:
        return Rule(TOP_LEVEL[part], False, f"TOP_LEVEL in {THIS}")
    return f"{where}: no 'May import:' paragraph in its docstring, nor an entry in TOP_LEVEL"


def rules() -> dict[str, Rule]:
    return {part: rule for part in parts() if isinstance(rule := _rule(part), Rule)}


def test_every_part_has_a_rule_naming_real_parts() -> None:
    problems = [rule for part in sorted(parts()) if isinstance(rule := _rule(part), str)]
    problems += [
        f"{rule.written_in}: {part} may import {name}, which is not a part of the code"
        for part, rule in sorted(rules().items())
        if rule.may_import != EVERYTHING
        for name in rule.may_import
        if name not in parts()
    ]
    problems += [f"TOP_LEVEL in {THIS}: no part {name}" for name in set(TOP_LEVEL) - parts()]
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def _allows(rule: Rule, target: str, target_rule: Rule | None) -> bool:
    if target_rule is not None and target_rule.open_to_all and target != "onss_sim":
        return True
    if rule.may_import == EVERYTHING:
        return target != "onss_sim"  # gateway and the drivers it sits on
    return target in rule.may_import


def violations() -> list[str]:
    known = rules()
    found = []
    for edge in imports():
        source, target = _part(edge.source), _part(edge.target)
        rule = known.get(source)
        if target in ("", source) or rule is None or _allows(rule, target, known.get(target)):
            continue
        may = rule.may_import if isinstance(rule.may_import, str) else ", ".join(rule.may_import)
        found.append(
            f"{edge}\n    {source} imports {target}; {rule.written_in} says it may import:"
            f" {may or 'nothing first-party'}"
        )
    return found


def test_each_part_imports_only_what_its_contract_allows() -> None:
    found = violations()
    if found:
        pytest.fail(
            f"{len(found)} import(s) outside the layers (move the code, or change the rule"
            " where it is written):\n" + "\n".join(found),
            pytrace=False,
        )


# --- the checker itself ----------------------------------------------------------------------


def test_the_contract_line_is_read_as_written() -> None:
    assert parse_contract("models, identifiers, clock, evidence. Nothing above it.") == (
        ("models", "identifiers", "clock", "evidence"),
        False,
    )
    assert parse_contract("models and journal. Not the daemon.") == (("models", "journal"), False)
    everything = parse_contract("everything in gateway; nothing in gateway imports it.")
    assert everything == (EVERYTHING, False)
    assert parse_contract(f"{NOTHING}.") == ((), False)
    assert parse_contract("the standard library only. Everything in gateway may import it.") == (
        (),
        True,
    )


def test_imports_resolve_to_the_module_they_run() -> None:
    by_statement = {(edge.source, edge.statement): edge for edge in imports()}
    # `from gateway.x import y` runs gateway.x.y when y is a submodule, gateway.x otherwise
    assert any(edge.target == "gateway.system.logs" for edge in imports())
    # a package's __init__ imports the submodules it re-exports
    init = [edge.target for edge in imports() if edge.source == "gateway.journal"]
    assert "gateway.journal.store" in init
    # nothing resolves outside the first-party modules, and every import has its line
    assert all(edge.target in modules() for edge in by_statement.values())
    assert all(edge.line > 0 for edge in imports())


def test_a_cycle_is_found_and_named_as_a_chain() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}
    assert _components(graph) == [{"a", "b", "c"}]
    assert cycles(graph) == [["a", "b", "c", "a"]]
    graph["b"].add("a")  # two cycles through a: each named, from its smallest module
    assert cycles(graph) == [["a", "b", "a"], ["a", "b", "c", "a"]]
