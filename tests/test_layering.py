"""The one-way layers of chainrule, read from its import graph (every module, parsed with `ast`):

    engine <- ops <- nn, optim, data, io, train, func, ... <- explain <- tabular, sklearn <- cli, demo

A module imports only modules of its own layer or of layers below it; no two modules import each
other, however indirectly; no module writes into another module (`other.name = ...`,
`setattr(other, ...)`); and imports stand at the top of the file, except the few heavy libraries
listed in LOADED_ON_FIRST_USE, whose import is put off on purpose. Each failure names the file,
the line and the rule it breaks. The checks run on any package folder, so the last tests build a
small package that breaks each rule and watch them fail.
"""

import ast
import textwrap
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "chainrule"

# Lowest first. A module belongs to the layer of the longest name here that it is, or is inside.
LAYERS = [
    ("engine", ["chainrule.engine"]),
    ("ops", ["chainrule.ops"]),
    (
        "toolkit",
        [
            "chainrule",  # the package's own namespace, `import chainrule as cr`
            "chainrule.accelerator",
            "chainrule.amp",
            "chainrule.autograd",
            "chainrule.backends",
            "chainrule.cuda",
            "chainrule.data",
            "chainrule.datasets",
            "chainrule.distributed",
            "chainrule.func",
            "chainrule.gradcheck",
            "chainrule.io",
            "chainrule.nn",
            "chainrule.optim",
            "chainrule.train",
            "chainrule.utils",
        ],
    ),
    ("explain", ["chainrule.explain"]),
    ("tabular", ["chainrule.tabular", "chainrule.sklearn"]),
    ("cli and demo", ["chainrule.cli", "chainrule.__main__", "chainrule.lesson"]),
]

# Imports that may wait inside a function, and why: each costs a large share of chainrule's own
# import time (measured with `python -X importtime`), and most programs never reach the function.
LOADED_ON_FIRST_USE = {
    "sympy": "symbolic derivations only (about half a second to import)",
    "matplotlib": "plots only (over half a second)",
    "sklearn": "the data-set loaders of chainrule.datasets only (over a second)",
    "tqdm": "a progress bar only on a terminal (a third of chainrule's import time)",
    "mpi4py": "an optional extra: only chainrule.distributed's MPI backend needs it",
    "scipy.sparse": "only a backward pass through an index lookup needs it (half of chainrule's "
    "import time)",
    "chainrule.explain": "the explainer, with SciPy and its drawing libraries, loads on first "
    "use (chainrule.__getattr__ does so for `cr.explain`)",
}


class Import:
    """One target of an import statement: `target` the module (of the package, or outside it)
    that it loads, `top` whether it runs when its module is imported, and where it is."""

    def __init__(self, path, line, text, target, top):
        self.path, self.line, self.text, self.target, self.top = path, line, text, target, top

    def where(self):
        return f"{self.path}:{self.line}: `{self.text}`"


class Module:
    """A parsed module: its syntax tree, imports, and the names its imports bind to modules of
    the package ({name: module})."""

    def __init__(self, path, shown, tree, imports, bound):
        self.path, self.shown, self.tree = path, shown, tree
        self.imports, self.bound = imports, bound
        self.lines = path.read_text().splitlines()

    def where(self, node):
        return f"{self.shown}:{node.lineno}: `{self.lines[node.lineno - 1].strip()}`"


def module_names(root):
    """{dotted module name: file} for every .py file of the package folder `root`."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = [root.name, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _top_level_statements(body):
    """Statements that run when the module is imported: the module's own, and those inside its
    top-level `if` and `try` blocks (not inside functions or classes)."""
    for node in body:
        yield node
        if isinstance(node, ast.If | ast.Try):
            blocks = [node.body, node.orelse]
            if isinstance(node, ast.Try):
                blocks += [node.finalbody, *(h.body for h in node.handlers)]
            for block in blocks:
                yield from _top_level_statements(block)


def _targets(node, package, modules):
    """(module loaded, name bound or None when the name is not a module) per imported name."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.asname:
                yield alias.name, alias.asname if alias.name in modules else None
            else:
                first = alias.name.partition(".")[0]
                yield alias.name, first if first in modules else None
        return
    if node.level:
        parts = package.split(".")
        source = ".".join(parts[: len(parts) - node.level + 1] + [node.module or ""]).strip(".")
    else:
        source = node.module
    for alias in node.names:
        candidate = f"{source}.{alias.name}"
        # `from package import submodule` loads the submodule; any other name is defined in
        # `source` itself.
        if candidate in modules:
            yield candidate, alias.asname or alias.name
        elif source.partition(".")[0] not in modules:
            # Outside the package a name may be a submodule (`from scipy import sparse`).
            yield candidate, None
        else:
            yield source, None


def parse_imports(root):
    """{dotted module name: Module} for the package folder `root`."""
    modules = module_names(root)
    found = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        top = set(_top_level_statements(tree.body))
        parsed = Module(path, path.relative_to(root.parent), tree, [], {})
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for target, bound in _targets(node, package, modules):
                    if bound is not None:
                        parsed.bound[bound] = target
                    text = parsed.lines[node.lineno - 1].strip()
                    parsed.imports.append(
                        Import(parsed.shown, node.lineno, text, target, node in top)
                    )
        found[name] = parsed
    return found


def layer_of(module, layers):
    """(index, name) of the layer `module` belongs to, or None."""
    best = None
    for index, (name, members) in enumerate(layers):
        for member in members:
            inside = module == member or (member != "chainrule" and module.startswith(member + "."))
            if inside and (best is None or len(member) > len(best[2])):
                best = (index, name, member)
    return None if best is None else best[:2]


def _internal(imports, root_name):
    return [i for i in imports if i.target.partition(".")[0] == root_name]


# ---- the rules ----------------------------------------------------------------------------------


def unplaced_modules(found, layers):
    return [
        f"{shown}: module {module} is in no layer; add it to LAYERS in tests/test_layering.py"
        for module, shown in ((m, found[m].shown) for m in found)
        if layer_of(module, layers) is None
    ]


def upward_imports(found, layers, root_name):
    problems = []
    for module, parsed in found.items():
        own = layer_of(module, layers)
        for imp in _internal(parsed.imports, root_name):
            target = layer_of(imp.target, layers)
            if own is not None and target is not None and target[0] > own[0]:
                problems.append(
                    f"{imp.where()}: {module} (layer '{own[1]}') imports {imp.target} (layer "
                    f"'{target[1]}', above it); imports must point down the layers "
                    + " <- ".join(name for name, _ in layers)
                )
    return problems


def import_cycles(found, root_name):
    """Each cycle of the module graph once, as the chain of imports that closes it."""
    edges = {}
    for module, parsed in found.items():
        for imp in _internal(parsed.imports, root_name):
            if imp.target != module and imp.target in found:
                edges.setdefault(module, {}).setdefault(imp.target, imp)
    problems, seen = [], set()

    def walk(module, stack, on_stack):
        for target in edges.get(module, {}):
            if target in on_stack:
                cycle = stack[stack.index(target) :] + [target]
                key = frozenset(cycle)
                if key not in seen:
                    seen.add(key)
                    steps = [edges[a][b].where() for a, b in zip(cycle, cycle[1:], strict=False)]
                    problems.append(f"import cycle {' -> '.join(cycle)}: " + "; then ".join(steps))
            elif target not in done:
                on_stack.add(target)
                walk(target, [*stack, target], on_stack)
                on_stack.discard(target)
        done.add(module)

    done = set()
    for module in sorted(found):
        if module not in done:
            walk(module, [module], {module})
    return problems


def _root_name(node):
    while isinstance(node, ast.Attribute | ast.Subscript):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def writes_into_other_modules(found):
    """Assignments to (or deletions of) an attribute of another module, and setattr/delattr on
    one, where the module is a name an import bound to a module of the package."""
    problems = []
    for module, parsed in found.items():
        bound = parsed.bound
        for node in ast.walk(parsed.tree):
            targets = []
            if isinstance(node, ast.Assign | ast.Delete):
                targets = node.targets
            elif isinstance(node, ast.AugAssign | ast.AnnAssign):
                targets = [node.target]
            written = [t for t in targets if isinstance(t, ast.Attribute | ast.Subscript)]
            for target in written:
                name = _root_name(target)
                if name in bound and bound[name] != module:
                    problems.append(
                        f"{parsed.where(node)}: {module} writes into module "
                        f"{bound[name]}; a module changes only its own names (pass what it "
                        "needs, or move the name to where it belongs)"
                    )
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("setattr", "delattr")
                and node.args
                and _root_name(node.args[0]) in bound
                and bound[_root_name(node.args[0])] != module
            ):
                problems.append(
                    f"{parsed.where(node)}: {module} calls {node.func.id} on module "
                    f"{bound[_root_name(node.args[0])]}; a module changes only its own names"
                )
    return problems


def imports_below_the_top(found, allowed):
    problems, seen = [], set()
    for module, parsed in found.items():
        for imp in parsed.imports:
            if imp.top or (imp.path, imp.line) in seen:
                continue
            reason = next(
                (
                    why
                    for name, why in allowed.items()
                    if imp.target == name or imp.target.startswith(name + ".")
                ),
                None,
            )
            explainer_inside = reason and imp.target.startswith("chainrule.explain")
            if reason is None or (explainer_inside and module.startswith("chainrule.explain")):
                seen.add((imp.path, imp.line))
                problems.append(
                    f"{imp.where()}: an import inside a function in {module}; move it to the top "
                    "of the file (only the heavy libraries in LOADED_ON_FIRST_USE may wait)"
                )
    return problems


def check(root, layers=LAYERS, allowed=LOADED_ON_FIRST_USE):
    """Every broken rule in the package folder `root`, one line each."""
    found = parse_imports(root)
    return {
        "layer": unplaced_modules(found, layers),
        "upward": upward_imports(found, layers, root.name),
        "cycle": import_cycles(found, root.name),
        "write": writes_into_other_modules(found),
        "lazy": imports_below_the_top(found, allowed),
    }


@pytest.fixture(scope="module")
def chainrule_problems():
    return check(PACKAGE)


def _report(problems):
    return "\n" + "\n".join(problems)


def test_every_module_is_in_a_layer(chainrule_problems):
    assert not chainrule_problems["layer"], _report(chainrule_problems["layer"])


def test_imports_point_down_the_layers(chainrule_problems):
    assert not chainrule_problems["upward"], _report(chainrule_problems["upward"])


def test_no_two_modules_import_each_other(chainrule_problems):
    assert not chainrule_problems["cycle"], _report(chainrule_problems["cycle"])


def test_no_module_writes_into_another(chainrule_problems):
    assert not chainrule_problems["write"], _report(chainrule_problems["write"])


def test_imports_are_at_the_top_unless_a_heavy_library_waits_on_purpose(chainrule_problems):
    assert not chainrule_problems["lazy"], _report(chainrule_problems["lazy"])


def test_the_import_graph_is_read_from_every_module():
    found = parse_imports(PACKAGE)
    assert len(found) == len(list(PACKAGE.rglob("*.py")))
    imports = {i.target for i in found["chainrule.tabular"].imports}
    assert {
        "chainrule.nn",
        "chainrule.io",
        "chainrule.ops",
        "sklearn.compose.ColumnTransformer",
    } <= imports


# ---- the checks themselves fail on a package that breaks the rules -------------------------------


def _write_package(tmp_path, files):
    root = tmp_path / "chainrule"
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def test_the_checks_name_the_file_line_and_rule_of_each_violation(tmp_path):
    root = _write_package(
        tmp_path,
        {
            "__init__.py": "",
            "engine/__init__.py": "",
            "engine/tensor.py": """\
                import numpy as np

                from ..tabular import fit
                """,
            "engine/autograd.py": """\
                from . import tensor, op
                """,
            "engine/op.py": """\
                from . import autograd

                autograd.backward = None
                """,
            "ops/__init__.py": """\
                from ..engine import tensor

                setattr(tensor, "extra", 1)
                """,
            "nn/__init__.py": """\
                def build():
                    import json
                    import sympy
                    from ..explain import graph
                """,
            "explain/__init__.py": "",
            "explain/graph.py": """\
                def draw():
                    from . import paths
                """,
            "explain/paths.py": "",
            "tabular.py": """\
                import numpy as np

                from . import lesson
                """,
            "lesson.py": "",
            "surprise.py": "",
        },
    )
    problems = check(root)
    assert problems["layer"] == [
        "chainrule/surprise.py: module chainrule.surprise is in no layer; add it to LAYERS in "
        "tests/test_layering.py"
    ]
    [upward, lazy_upward, demo] = problems["upward"]
    assert lazy_upward.startswith("chainrule/nn/__init__.py:4: `from ..explain import graph`")
    assert upward.startswith(
        "chainrule/engine/tensor.py:3: `from ..tabular import fit`: chainrule.engine.tensor "
        "(layer 'engine') imports chainrule.tabular (layer 'tabular', above it)"
    )
    assert demo.startswith("chainrule/tabular.py:3: `from . import lesson`")
    [cycle] = problems["cycle"]
    assert cycle.startswith("import cycle chainrule.engine.autograd -> chainrule.engine.op -> ")
    assert "chainrule/engine/op.py:1: `from . import autograd`" in cycle
    assert sorted(problems["write"]) == [
        "chainrule/engine/op.py:3: `autograd.backward = None`: chainrule.engine.op writes into "
        "module chainrule.engine.autograd; a module changes only its own names (pass what it "
        "needs, or move the name to where it belongs)",
        'chainrule/ops/__init__.py:3: `setattr(tensor, "extra", 1)`: chainrule.ops calls '
        "setattr on module chainrule.engine.tensor; a module changes only its own names",
    ]
    lazy = problems["lazy"]
    assert [p.split(":")[:2] for p in lazy] == [
        ["chainrule/explain/graph.py", "2"],
        ["chainrule/nn/__init__.py", "2"],
    ]
    assert (
        "`import json`: an import inside a function in chainrule.nn; move it to the top"
        in (lazy[1])
    )


def test_a_clean_package_passes_every_check(tmp_path):
    root = _write_package(
        tmp_path,
        {
            "__init__.py": "from . import ops\n",
            "engine/__init__.py": "",
            "engine/tensor.py": "import numpy as np\n",
            "ops/__init__.py": "from ..engine.tensor import np\n",
            "cli.py": "def explain():\n    from . import explain\n",
            "explain/__init__.py": "from ..ops import np\n",
        },
    )
    assert check(root) == {"layer": [], "upward": [], "cycle": [], "write": [], "lazy": []}
