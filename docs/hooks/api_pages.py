"""MkDocs hook: the API reference pages, generated from each module's `__all__`.

Every public name is documented because the pages are made from the names the
package exports, not written by hand. The build fails (an error under
`mkdocs build --strict` and without it) when

- a module of the reference has no `__all__`,
- a subpackage that `keras_margin.__all__` names has no page here,
- docs/api/index.md does not link a generated page,
- an exported name has no docstring,
- a function's or class's docstring leaves a parameter of its signature out of
  its `Args:` section, or lists one that neither it nor (for a class) an
  `__init__` of its bases in the package takes.

The package is read with griffe, as mkdocstrings reads it, so building the docs
imports neither TensorFlow nor the optional extras.
"""

from pathlib import Path

import griffe
from griffe import DocstringSectionKind
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

PACKAGE = "keras_margin"

# (page under docs/api/, module path)
API_PAGES = (
    ("layers", "keras_margin.layers"),
    ("losses", "keras_margin.losses"),
    ("margins", "keras_margin.margins"),
    ("distances", "keras_margin.distances"),
    ("backbones", "keras_margin.backbones"),
    ("data", "keras_margin.data"),
    ("align", "keras_margin.data.align"),
    ("metrics", "keras_margin.metrics"),
    ("evaluation", "keras_margin.evaluation"),
    ("callbacks", "keras_margin.callbacks"),
    ("export", "keras_margin.export"),
    ("serving", "keras_margin.serving"),
    ("plot", "keras_margin.plot"),
)


def _load_package():
    return griffe.load(PACKAGE, search_paths=["."], resolve_aliases=True, resolve_external=False)


def _documented_path(module, name):
    """The path mkdocstrings should render for `module.name`.

    A function exported under the name of the submodule that defines it
    (`keras_margin.backbones.iresnet`) is shadowed by that submodule in a
    static reading, so the function inside the submodule is named instead.
    """
    member = module[name]
    if member.is_module and name in member.members:
        return f"{member.path}.{name}", member[name]
    return f"{module.path}.{name}", member


def _signature_parameters(member):
    """Names the callable takes, and for a class those of its bases' `__init__` in the package."""
    if member.is_function:
        return [p.name for p in member.parameters], set()
    if not member.is_class:
        return [], set()
    own = member.members["__init__"].parameters if "__init__" in member.members else []
    inherited = set()
    for base in member.mro():
        if "__init__" in base.members:
            inherited |= {p.name for p in base.members["__init__"].parameters}
    return [p.name for p in own], inherited


def _documented_parameters(docstring):
    names = set()
    for section in docstring.parse("google", warn_missing_types=False, warn_unknown_params=False):
        if section.kind is DocstringSectionKind.parameters:
            names |= {name.strip().lstrip("*") for entry in section.value for name in entry.name.split(",")}
    return names


def _parameter_problems(path, member):
    """How the `Args:` section of `member` disagrees with its signature."""
    member = member.final_target if member.is_alias else member
    if not member.docstring:
        return []
    own, inherited = _signature_parameters(member)
    own = [name.lstrip("*") for name in own if name not in ("self", "cls")]
    documented = _documented_parameters(member.docstring)
    problems = [f"{path}: `{name}` is not in Args" for name in own if name not in documented]
    known = set(own) | {name.lstrip("*") for name in inherited}
    problems += [f"{path}: Args lists `{name}`, which it does not take" for name in sorted(documented - known)]
    return problems


def _first_line(docstring):
    if docstring is None or not docstring.value.strip():
        return ""
    return docstring.value.strip().splitlines()[0]


def _module_page(module):
    lines = [f"# `{module.path}`", ""]
    if module.docstring:
        lines += [module.docstring.value.strip(), ""]
    lines += ["| name | what it is |", "|---|---|"]
    documented = []
    for name in module.exports:
        path, member = _documented_path(module, name)
        documented.append((path, member))
        summary = _first_line(member.docstring).replace("|", r"\|")
        lines.append(f"| [`{name}`][{path}] | {summary} |")
    lines.append("")
    for path, _ in documented:
        lines += [f"::: {path}", ""]
    return "\n".join(lines), documented


def _package_page(package, pages):
    lines = [
        f"# `{PACKAGE}`",
        "",
        "The names `import keras_margin` gives: the layers most models need, re-exported from "
        "[`keras_margin.layers`](layers.md), and the subpackages, each with its own page.",
        "",
        "| name | documented at |",
        "|---|---|",
    ]
    for name in package.exports:
        member = package[name]
        if member.is_module:
            if name not in pages:
                raise PluginError(f"`{PACKAGE}.{name}` is exported but has no API page: add it to API_PAGES in "
                                  f"docs/hooks/api_pages.py")
            lines.append(f"| `{PACKAGE}.{name}` | [{pages[name]}]({name}.md) |")
        else:
            target = member.target_path if member.is_alias else member.path
            canonical = _canonical(target)
            lines.append(f"| `{PACKAGE}.{name}` | [`{canonical}`][{canonical}] |")
    return "\n".join(lines) + "\n"


def _canonical(target_path):
    """`keras_margin.layers.arc_margin_head.ArcMarginHead` → `keras_margin.layers.ArcMarginHead`."""
    parts = target_path.split(".")
    return ".".join(parts[:2] + parts[-1:])


def _check_index(config, pages):
    """docs/api/index.md (written by hand) links every generated page."""
    index = (Path(config["docs_dir"]) / "api" / "index.md").read_text()
    missing = [f"{page}.md" for page in ("keras_margin", *pages) if f"]({page}.md)" not in index]
    if missing:
        raise PluginError(f"docs/api/index.md does not link the API pages {missing}")


def on_files(files, config):
    package = _load_package()
    undocumented = []
    problems = []
    pages = {}
    for page, module_path in API_PAGES:
        module = package[module_path.removeprefix(PACKAGE + ".")]
        if module.exports is None:
            raise PluginError(f"`{module_path}` has no `__all__`: the API reference is generated from it")
        content, documented = _module_page(module)
        undocumented += [path for path, member in documented if not (member.docstring and member.docstring.value.strip())]
        problems += [problem for path, member in documented for problem in _parameter_problems(path, member)]
        files.append(File.generated(config, f"api/{page}.md", content=content))
        pages[module_path.split(".")[-1]] = f"`{module_path}`"
    if undocumented:
        raise PluginError("Public names without a docstring: " + ", ".join(sorted(undocumented)))
    if problems:
        raise PluginError("Docstrings that disagree with their signatures:\n  " + "\n  ".join(problems))
    files.append(File.generated(config, "api/keras_margin.md", content=_package_page(package, pages)))
    _check_index(config, [page for page, _ in API_PAGES])
    return files
