"""The package reaches Keras, TensorFlow and JAX through their public APIs only.

Every `.py` file under `keras_margin/` is read (not imported) and fails on:

- the private modules `keras.src`, `tensorflow.python` and `jax.core`, anywhere in a
  line (imports, strings, comments);
- an attribute `<name>._<attr>` of anything but `self`, `cls` or one of our own modules
  (`keras_margin._validation`, an alias bound by `import keras_margin._distribute as d`);
  Python's own dunders (`__init__`, `__name__`, ...) pass, `tf.__internal__` does not, and
  so do the standard library's documented underscore names (`sys._getframe`, a namedtuple's
  `_replace`);
- `super()._<attr>`, unless `_<attr>` is a method the package defines itself and Keras does not;
- in a class derived from a Keras class: a method `_<name>` or an attribute `self._<name>`
  whose name Keras' own base classes use (an override of, or a write into, Keras' internals).

Each finding is reported as `file:line: what`. The few uses that have no public replacement
are listed in `EXCEPTIONS` with the reason; each must still be there (so the list shrinks
when one is replaced), and nothing else may be.
"""

import ast
import pathlib
import re

import keras

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "keras_margin"
PRIVATE_MODULES = re.compile(r"\b(keras\.src|tensorflow\.python|jax\.core)\b")
# dunders are Python's own protocol (`__init__`, `__name__`), except this namespace TensorFlow keeps for Keras
INTERNAL_DUNDERS = {"__internal__"}
# the standard library's documented API whose names begin with an underscore
STDLIB_DOCUMENTED = {"sys._getframe", "os._exit"}
NAMEDTUPLE_METHODS = {"_replace", "_asdict", "_make", "_fields", "_field_defaults"}

# (file, the finding's text): why no public API does it
EXCEPTIONS = {
    ("keras_margin/layers/center_loss_layer.py", "method _get_own_losses overrides a Keras-internal name"):
        "Under MirroredStrategy the replicas run as threads over one layer and switch at the cross-replica "
        "sums of the center update; Keras' add_loss list is shared, so a replica would read another's term. "
        "Keras collects a layer's losses only through this hook; no public API keeps a term per replica.",
    ("keras_margin/layers/center_loss_layer.py", "super()._get_own_losses"): "as above",
    ("keras_margin/layers/center_loss_layer.py", "method _clear_losses overrides a Keras-internal name"):
        "the per-replica terms are cleared with Keras' own list, through the hook Keras calls for it",
    ("keras_margin/layers/center_loss_layer.py", "super()._clear_losses"): "as above",
    ("keras_margin/_mixed_matmul.py", "tf.__internal__"):
        "TensorFlow exports no public query for 'tracing under jit_compile=True'; "
        "tf.__internal__.get_enclosing_xla_context is the exported one (no tensorflow.python import), "
        "and picks the bfloat16 x bfloat16 -> float32 dot that only XLA has a kernel for.",
}


def keras_internal_names():
    """The underscore names Keras' base classes use (methods and the attributes their instances set)."""
    objects = [
        keras.layers.Layer(), keras.Model(), keras.metrics.Mean(), keras.losses.MeanSquaredError(),
        keras.callbacks.Callback(), keras.optimizers.SGD(), keras.regularizers.L2(), keras.initializers.Zeros(),
        keras.constraints.NonNeg(), keras.layers.InputSpec(),
    ]
    names = set()
    for instance in objects:
        names.update(dir(type(instance)), vars(instance))
    return {name for name in names if name.startswith("_") and not is_dunder(name)}


def is_dunder(name):
    return name.startswith("__") and name.endswith("__") and len(name) > 4


def package_sources():
    """`{file: source}` for every `.py` file under `keras_margin/`, `file` relative to the repository."""
    return {path.relative_to(PACKAGE.parent).as_posix(): path.read_text(encoding="utf-8")
            for path in sorted(PACKAGE.rglob("*.py"))}


def dotted(node):
    """`a.b.c` for a chain of names and attributes, else None."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = dotted(node.value)
        return None if base is None else f"{base}.{node.attr}"
    return None


def is_own_module(module):
    """Whether the dotted `module` is the package or one of its modules."""
    parts = module.split(".")
    path = PACKAGE.parent.joinpath(*parts)
    return parts[0] == "keras_margin" and (path.is_dir() or path.with_suffix(".py").exists())


def bound_names(tree):
    """The names a file binds by import to our own modules, and to Keras or its modules and classes."""
    own, keras_names = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                root = alias.name.split(".")[0]
                name = alias.asname or root
                if root == "keras_margin":
                    own.add(name)
                elif root == "keras":
                    keras_names.add(name)
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                name = alias.asname or alias.name
                if is_own_module(f"{node.module}.{alias.name}"):
                    own.add(name)
                elif node.module.split(".")[0] == "keras":
                    keras_names.add(name)
    return own, keras_names


def keras_derived_classes(trees):
    """The names of the package's classes that derive, directly or through each other, from a Keras class."""
    parents, derived = {}, set()
    for tree in trees.values():
        _, keras_names = bound_names(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                bases = [dotted(base) or "" for base in node.bases]
                parents[node.name] = [base.split(".")[-1] for base in bases]
                if any(base.split(".")[0] in keras_names for base in bases):
                    derived.add(node.name)
    changed = True
    while changed:
        grown = {name for name, names in parents.items() if set(names) & derived} - derived
        derived |= grown
        changed = bool(grown)
    return derived


def own_private_methods(trees, internal):
    """Underscore methods the package defines that are not Keras names (callable through `super()`)."""
    return {
        node.name
        for tree in trees.values()
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.name.startswith("_") and not is_dunder(node.name) and node.name not in internal
    }


def imported_private_modules(node):
    """Private modules an import statement names, e.g. `from jax import core`."""
    names = []
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module:
        names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return [name for name in names if PRIVATE_MODULES.match(name)]


def findings(sources=None):
    """`(file, line, what)` for every use of a private API in `sources` (default: the package)."""
    sources = package_sources() if sources is None else sources
    trees = {file: ast.parse(source, filename=file) for file, source in sources.items()}
    internal = keras_internal_names()
    derived = keras_derived_classes(trees)
    own_methods = own_private_methods(trees, internal)
    found = set()
    for file, tree in trees.items():
        for number, line in enumerate(sources[file].splitlines(), 1):
            for match in PRIVATE_MODULES.finditer(line):
                found.add((file, number, match.group(0)))
        own_modules, _ = bound_names(tree)
        for node in ast.walk(tree):
            for module in imported_private_modules(node):
                found.add((file, node.lineno, f"import {module}"))
            if not (isinstance(node, ast.Attribute) and node.attr.startswith("_")):
                continue
            if is_dunder(node.attr) and node.attr not in INTERNAL_DUNDERS:
                continue
            value = node.value
            if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "super":
                if node.attr not in own_methods:
                    found.add((file, node.lineno, f"super().{node.attr}"))
                continue
            base = dotted(value)
            if base in ("self", "cls") or (base is not None and base.split(".")[0] in own_modules):
                continue
            if f"{base}.{node.attr}" in STDLIB_DOCUMENTED or node.attr in NAMEDTUPLE_METHODS:
                continue
            found.add((file, node.lineno, f"{base or ast.unparse(value)}.{node.attr}"))
        for cls in (node for node in ast.walk(tree) if isinstance(node, ast.ClassDef) and node.name in derived):
            for node in ast.walk(cls):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in internal:
                    found.add((file, node.lineno, f"method {node.name} overrides a Keras-internal name"))
                if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                        and node.value.id == "self" and node.attr in internal):
                    found.add((file, node.lineno, f"self.{node.attr} is a Keras-internal attribute"))
    return sorted(found)


def format_findings(items):
    return "\n".join(f"{file}:{line}: {what}" for file, line, what in items)


def test_package_uses_public_apis_only():
    unexpected = [item for item in findings() if (item[0], item[2]) not in EXCEPTIONS]
    assert not unexpected, "private APIs used:\n" + format_findings(unexpected)


def test_every_listed_exception_is_still_needed():
    present = {(file, what) for file, _, what in findings()}
    stale = sorted(set(EXCEPTIONS) - present)
    assert not stale, f"listed in EXCEPTIONS but no longer found (remove them): {stale}"


def test_the_check_finds_what_it_is_for():
    """Each kind of private use in a sample file is reported at its line; the public forms are not."""
    lines = [
        "import keras, keras_margin._distribute",                        # 1
        "from keras.src.layers import Dense",                            # 2
        "from tensorflow.python.ops import control_flow_util",           # 3
        "from jax import core",                                          # 4
        "import keras_margin._validation as validation",                 # 5
        "from keras import layers",                                      # 6
        "class Layer(layers.Layer):",                                    # 7
        "    def _get_own_losses(self):",                                # 8
        "        return super()._get_own_losses()",                      # 9
        "    def call(self, x):",                                        # 10
        "        self._losses.clear()",                                  # 11
        "        layers = self.model._flatten_layers()",                 # 12
        "        history = x._keras_history",                            # 13
        "        validation._private_helper()",                          # 14
        "        self._own_state = type(x).__name__",                    # 15
        "        return super()._own_helper(x)",                         # 16
        "    def _own_helper(self, x):",                                 # 17
        "        return keras_margin._distribute.cross_replica_sum(x)",  # 18
        "def xla(): return tf.__internal__.get_enclosing_xla_context()",  # 19
        "def caller(): return sys._getframe(1).f_code.co_name",          # 20
    ]
    got = {(line, what) for _, line, what in findings({"keras_margin/sample.py": "\n".join(lines)})}
    assert got == {
        (2, "keras.src"), (2, "import keras.src.layers"), (2, "import keras.src.layers.Dense"),
        (3, "tensorflow.python"), (3, "import tensorflow.python.ops"),
        (3, "import tensorflow.python.ops.control_flow_util"), (4, "import jax.core"),
        (8, "method _get_own_losses overrides a Keras-internal name"), (9, "super()._get_own_losses"),
        (11, "self._losses is a Keras-internal attribute"), (12, "self.model._flatten_layers"),
        (13, "x._keras_history"), (19, "tf.__internal__"),
    }
