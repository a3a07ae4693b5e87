"""The documentation site builds strictly, and its API check catches what it promises to catch."""

import importlib.util
import os
import pathlib
import subprocess
import sys
import textwrap

import griffe
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load_hook():
    spec = importlib.util.spec_from_file_location("api_pages", ROOT / "docs" / "hooks" / "api_pages.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mkdocs_build_strict(tmp_path):
    """Broken links, unresolved API references, undocumented public names and griffe warnings fail it."""
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    site = tmp_path / "site"
    # every public name of every reference page has its own anchor in the built page
    hook = load_hook()
    package = hook._load_package()
    for page, module_path in hook.API_PAGES:
        html = (site / "api" / page / "index.html").read_text()
        module = package[module_path.removeprefix("keras_margin.")]
        for name in module.exports:
            path, _ = hook._documented_path(module, name)
            assert f'id="{path}"' in html, f"{path} has no entry on api/{page}"


def fake_package(tmp_path, source):
    folder = tmp_path / "fakepkg"
    folder.mkdir()
    (folder / "__init__.py").write_text(textwrap.dedent(source))
    return griffe.load("fakepkg", search_paths=[str(tmp_path)], resolve_aliases=True, resolve_external=False)


def test_parameter_check_names_missing_and_unknown_arguments(tmp_path):
    package = fake_package(tmp_path, '''
        __all__ = ["scale_by", "Base", "Child"]

        def scale_by(x, factor=2.0, *, clip=None):
            """Multiplies.

            Args:
                x: values.
                factr: a misspelt factor.
            """

        class Base:
            """A base.

            Args:
                name: its name.
            """
            def __init__(self, name=None):
                pass

        class Child(Base):
            """A child taking `name` through **kwargs.

            Args:
                units: how many.
                name: its name, passed on to `Base`.
                **kwargs: passed on to `Base`.
            """
            def __init__(self, units, **kwargs):
                super().__init__(**kwargs)
    ''')
    hook = load_hook()
    problems = [problem for name in package.exports
                for problem in hook._parameter_problems(f"fakepkg.{name}", package[name])]
    assert problems == [
        "fakepkg.scale_by: `factor` is not in Args",
        "fakepkg.scale_by: `clip` is not in Args",
        "fakepkg.scale_by: Args lists `factr`, which it does not take",
    ]


def test_every_public_name_is_documented():
    """What the build enforces, stated directly: each name in each reference module's __all__ has a docstring."""
    hook = load_hook()
    package = hook._load_package()
    undocumented = []
    for _, module_path in hook.API_PAGES:
        module = package[module_path.removeprefix("keras_margin.")]
        assert module.exports, f"{module_path} declares no __all__"
        for name in module.exports:
            path, member = hook._documented_path(module, name)
            if not (member.docstring and member.docstring.value.strip()):
                undocumented.append(path)
    assert not undocumented


@pytest.mark.parametrize("subpackage", ["layers", "losses", "backbones", "data", "metrics", "evaluation"])
def test_runtime_and_static_exports_agree(subpackage):
    """The reference reads __all__ statically; it must be the list Python sees."""
    import importlib

    module = importlib.import_module(f"keras_margin.{subpackage}")
    package = load_hook()._load_package()
    assert list(package[subpackage].exports) == list(module.__all__)
