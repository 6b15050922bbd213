"""The package's shape: data flows one way, from the math at the bottom to the faces at the top.

Every `import` in minicnn/ (at module level or inside a function) is read with ast. The imports form no
cycle, and each goes down the levels below or stays within its level, never up. `import minicnn` loads
the engine only: no weight-file reader, no dataset code, no optional package.
"""
import ast
import subprocess
import sys

from helpers import REPO

PACKAGE = REPO / "minicnn"

# level of each module, from the bottom; a module may import its own level and the levels below.
# Subpackages are given by their prefix (everything under io/ is "io"); a dotted entry names one
# module of a subpackage that sits elsewhere (the most specific entry wins).
LEVELS = [
    ("argument checks", ["checks"]),
    ("math: sizes, the im2col reference, Winograd's transforms", ["shapes", "im2col", "winograd"]),
    ("kernels (Numba twins of the reference; they trust their callers)", ["kernels"]),
    ("ops: pure functions on arrays, arguments checked once here", ["ops"]),
    ("the lecture's algebra, built on ops", ["matrix"]),
    ("engine: layers, network, training", ["layers", "network", "train"]),
    ("models, data and files: architectures, the shapes generator, ImageNet preprocessing, io/",
     ["models", "data", "imagenet", "io"]),
    ("methods: viz/, figures, the dataset index, evaluation", ["viz", "plot", "index", "evaluate"]),
    ("faces and tools: the tour, the CLI, the explorer, the recipes, minicnn.testing",
     ["tour", "cli", "explain", "user_input", "explore", "recipes", "testing", "__main__", "index.command"]),
]


def module_name(path):
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path, name):
    """The minicnn modules that the file imports, as dotted names relative to the package."""
    is_package = path.name == "__init__.py"
    here = name.split(".") if name else []
    package = here if is_package else here[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name[len("minicnn."):] for alias in node.names if alias.name.startswith("minicnn.")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and (node.module == "minicnn" or node.module.startswith("minicnn.")):
                target = node.module[len("minicnn."):] if node.module != "minicnn" else ""
            else:
                continue
            for alias in node.names:  # `from . import ops` imports the module ops
                candidate = f"{target}.{alias.name}" if target else alias.name
                found.add(candidate if candidate in MODULES else target)
    return {module for module in found if module}


MODULES = {module_name(path) for path in PACKAGE.rglob("*.py")}
GRAPH = {module_name(path): imported_modules(path, module_name(path)) for path in PACKAGE.rglob("*.py")}


def level_of(module):
    parts = module.split(".")
    for length in range(len(parts), 0, -1):
        prefix = ".".join(parts[:length])
        for index, (_, members) in enumerate(LEVELS):
            if prefix in members:
                return index
    raise AssertionError(f"minicnn.{module} has no level in LEVELS: add it where it belongs")


def test_every_module_has_a_level():
    for module in MODULES - {""}:
        level_of(module)


def test_the_imports_form_no_cycle():
    state = {}  # module -> "open" while on the current path, "done" after

    def visit(module, path):
        state[module] = "open"
        for target in sorted(GRAPH.get(module, ())):
            if state.get(target) == "open":
                cycle = path[path.index(target):] + [target]
                raise AssertionError("import cycle: " + " -> ".join(f"minicnn.{m}" for m in cycle))
            if target not in state:
                visit(target, path + [target])
        state[module] = "done"

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])


def test_imports_only_go_down_the_levels():
    upward = [f"minicnn.{module} ({LEVELS[level_of(module)][0]}) imports minicnn.{target} "
              f"({LEVELS[level_of(target)][0]})"
              for module, targets in GRAPH.items() if module
              for target in targets if level_of(target) > level_of(module)]
    assert not upward, "imports that go up a level:\n" + "\n".join(upward)


def test_import_minicnn_loads_the_engine_only():
    code = ("import sys, minicnn; print('\\n'.join(sorted(m for m in sys.modules "
            "if m.startswith('minicnn') or m.split('.')[0] in ('h5py', 'safetensors', 'torch', 'sklearn', "
            "'hypothesis', 'starlette', 'dask', 'PIL', 'matplotlib'))))")
    loaded = set(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                                cwd=REPO).stdout.split())
    assert not {m for m in loaded if m.startswith(("minicnn.io", "minicnn.weights", "minicnn.data"))}, loaded
    assert not {m for m in loaded if not m.startswith("minicnn")}, loaded
