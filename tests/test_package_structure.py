"""The package's shape, read from its source with ``ast`` (nothing is imported, so this runs in about a second).

* no import cycle among medseg modules, counting module-level and function-level imports and the package
  ``__init__`` modules an import runs (imports under ``if TYPE_CHECKING:`` are annotations, never executed);
* no function-local import of a medseg module except those in :data:`LOCAL_IMPORTS_ALLOWED` (each says why) and
  in the command lines (:data:`LAZY_ENTRY_POINTS`);
* no ``sys.path`` edit outside the published script paths (:data:`SYS_PATH_ALLOWED`): everything else imports the
  installed package (``pip install -e .``);
* no module over :data:`MAX_LINES` lines except those in :data:`LONG_MODULES_ALLOWED` (each says why).
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "medseg"
MAX_LINES = 400

#: (importing module, imported module) pairs that may import inside a function, and why.
LOCAL_IMPORTS_ALLOWED: dict[tuple[str, str], str] = {
    # the config loader is imported by every command line before its arguments are parsed; the transform policies
    # pull in torch and scipy, so they are imported only when a config is actually built
    ("medseg.config", "medseg.data.transforms"): "heavy optional dependency (torch, scipy) of one check",
    # the CPU allocator tuning is optional (it needs glibc's mallopt); its absence must not stop a training
    ("medseg.training.entry", "medseg.utils.memory"): "optional platform feature, guarded by ImportError",
    # the published model class draws its segmentation plot with matplotlib only when asked to save one
    ("medseg.models.model_io", "medseg.training.plots"):
        "optional heavy dependency (matplotlib) of one published method",
}

#: Packages whose modules may import medseg modules inside functions: the command lines, which parse their
#: arguments (and answer --help or a usage error) before they load torch and the rest of the package.
LAZY_ENTRY_POINTS = ("medseg.cli",)

#: Files (relative to the repository) that may edit ``sys.path``: the published script paths, run as
#: ``python <path>`` from a checkout, make the repository root importable instead of their own folder.
SYS_PATH_ALLOWED = {
    "medseg/train_adv_supervised_segmentation_triplet.py",
    "medseg/test_ACDC_triplet_segmentation.py",
    "medseg/dataset_loader/acdc_preprocess.py",
    "medseg/dataset_loader/mnms_preprocess.py",
    "medseg/dataset_loader/generate_artefacted_data.py",
}

#: Modules allowed over MAX_LINES lines, and why.
LONG_MODULES_ALLOWED: dict[str, str] = {
    "medseg.config": "the whole experiment schema (one frozen dataclass per JSON section) and its one validating "
                     "loader with dotted-key errors, read top to bottom",
    "medseg.data.base_dataset": "the published dataset base class: its published methods, with the slice index, "
                                "caching and per-sample seeding they share",
    "medseg.data.transforms": "the published augmentation policies and the composed steps they are lists of",
    "medseg.experiments.report": "the RESULTS.md template: one function per report section, in report order",
    "medseg.io.nifti": "NIfTI read/write with geometry, and the integrity checks every reader relies on",
    "medseg.phantom.heart": "the cardiac phantom's geometry and motion model, one coherent parametrisation",
    "medseg.training.loop": "the training run: epochs, validation, saving and resuming, in one readable loop",
    "medseg.training.snapshot": "the one run-snapshot format: its writer, its verifying reader and the restore of "
                                "each part",
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The medseg module an imported dotted name lives in (``medseg.a.b.func`` -> ``medseg.a.b``)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, int, bool]]:
    """``(imported medseg module, line, inside a function)`` for every import statement of ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            names: list[str] = []
            if isinstance(child, ast.Import):
                names = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:  # relative import: resolve against this module's package
                    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
                    for _ in range(child.level - 1):
                        package = package.rpartition(".")[0]
                    base = f"{package}.{base}" if base else package
                names = [f"{base}.{alias.name}" for alias in child.names]
            for name in names:
                if name != "medseg" and not name.startswith("medseg."):
                    continue
                target = _resolve(name, modules)
                if target is not None and target != module:
                    found.append((target, child.lineno, in_function))
                # importing medseg.a.b.c runs medseg/a/__init__.py and medseg/a/b/__init__.py first
                package = (target or "").rpartition(".")[0]
                while package not in ("", "medseg"):
                    if package in modules and package != module and not module.startswith(package + "."):
                        found.append((package, child.lineno, False))  # an edge, not a named local import
                    package = package.rpartition(".")[0]
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(tree, False)
    return found


def _graph() -> tuple[dict[str, set[str]], list[tuple[str, str, int]]]:
    modules = _modules()
    edges: dict[str, set[str]] = {name: set() for name in modules}
    local = []
    for name, path in modules.items():
        for target, line, in_function in _imports(name, path, modules):
            edges[name].add(target)
            if in_function:
                local.append((name, target, line))
    return edges, local


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    counter = 0
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _sys_path_edits(path: Path) -> list[int]:
    """Lines that change ``sys.path`` (assignment, slice assignment, or a mutating method call)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))

    def is_sys_path(node: ast.AST) -> bool:
        return (isinstance(node, ast.Attribute) and node.attr == "path" and isinstance(node.value, ast.Name)
                and node.value.id == "sys")

    lines = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(is_sys_path(t) or (isinstance(t, ast.Subscript) and is_sys_path(t.value)) for t in targets):
                lines.append(node.lineno)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and is_sys_path(node.func.value)
              and node.func.attr in ("insert", "append", "extend", "remove", "pop", "clear")):
            lines.append(node.lineno)
    return lines


def test_the_import_walk_sees_the_package():
    edges, _ = _graph()
    assert "medseg.config" in edges["medseg.training.entry"]  # a module-level import is an edge
    assert {"medseg.method.hard_examples", "medseg.method"} <= edges["medseg.training.validation"]  # + its package


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    edges, _ = _graph()
    cycles = _cycles(edges)
    described = ["; ".join(f"{a} -> {b}" for a in component for b in sorted(edges[a]) if b in component)
                 for component in cycles]
    assert not cycles, "import cycles among medseg modules:\n" + "\n".join(described)


def test_function_local_imports_are_listed():
    _, local = _graph()
    unexpected = [f"{module}:{line} imports {target} inside a function" for module, target, line in local
                  if (module, target) not in LOCAL_IMPORTS_ALLOWED
                  and not any(module == e or module.startswith(e + ".") for e in LAZY_ENTRY_POINTS)]
    assert not unexpected, ("function-local imports of medseg modules (import at module level, or list the pair "
                            "with its reason in LOCAL_IMPORTS_ALLOWED):\n" + "\n".join(unexpected))
    stale = set(LOCAL_IMPORTS_ALLOWED) - {(module, target) for module, target, _ in local}
    assert not stale, f"LOCAL_IMPORTS_ALLOWED lists imports that no longer exist: {sorted(stale)}"


def test_sys_path_edits_are_found():
    assert _sys_path_edits(REPO / "medseg" / "train_adv_supervised_segmentation_triplet.py")


def test_no_sys_path_edits_outside_the_published_script_paths():
    files = [p for folder in ("medseg", "scripts", "benchmarks") for p in sorted((REPO / folder).rglob("*.py"))]
    offenders = [f"{path.relative_to(REPO).as_posix()}:{line}" for path in files
                 if path.relative_to(REPO).as_posix() not in SYS_PATH_ALLOWED for line in _sys_path_edits(path)]
    assert not offenders, ("sys.path edited outside the published script paths (import the installed package):\n"
                           + "\n".join(offenders))


def test_module_sizes():
    sizes = {name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in _modules().items()}
    long = {name: lines for name, lines in sizes.items() if lines > MAX_LINES and name not in LONG_MODULES_ALLOWED}
    assert not long, f"modules over {MAX_LINES} lines (split them, or say why in LONG_MODULES_ALLOWED): {long}"
    stale = [name for name in LONG_MODULES_ALLOWED if sizes.get(name, 0) <= MAX_LINES]
    assert not stale, f"LONG_MODULES_ALLOWED lists modules that are no longer long: {stale}"
