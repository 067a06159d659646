"""The one part of the build that pyproject.toml can't state: the package list, and conf/ and sweeps/ in the wheel.

Why the install is what it is: Hydra finds our sweepers by walking the ``hydra_plugins`` namespace
with ``pkgutil``, which sees only real folders on ``sys.path``. Setuptools installs a project
editable (``pip install -e .``) through a plain path entry only when every package sits under the
project folder at its own dotted path and ``package_dir`` names that one root; anything else
(a remapped subpackage, or no ``package_dir`` at all) makes it use an import hook instead, and Hydra then never sees ``hydra_plugins.fashion_lab_*`` (hydra
#2359, #3252). So nothing is remapped here.

``conf/`` and ``sweeps/`` stay at the top of the repository (Hydra, the docs and the tests point
there). A regular build (``pip install .``, ``pip wheel .``) copies every ``*.yaml`` of them into the
wheel as ``fashion_lab/_conf`` and ``fashion_lab/_sweeps``, so an installed package finds its configs
next to its code; an editable install reads the checkout's folders directly (``fashion_lab.config``).
Everything else (metadata, dependencies, entry points) is in pyproject.toml.
"""

from pathlib import Path

from setuptools import find_namespace_packages, find_packages, setup
from setuptools.command.build_py import build_py

DATA_FOLDERS = {"conf": "_conf", "sweeps": "_sweeps"}  # checkout folder -> folder inside fashion_lab/


class build_py_with_configs(build_py):
    """``build_py`` that also copies conf/ and sweeps/ into the built package (not for editable installs)."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):  # the checkout's own folders are read in place
            return
        for folder, packaged in DATA_FOLDERS.items():
            for source in sorted(Path(folder).rglob("*.yaml")):
                target = Path(self.build_lib, "fashion_lab", packaged, source.relative_to(folder))
                self.mkpath(str(target.parent))
                self.copy_file(str(source), str(target))


setup(
    # hydra_plugins is Hydra's namespace package (no __init__.py): our sweepers ship in it.
    packages=find_packages(include=["fashion_lab", "fashion_lab.*"])
    + find_namespace_packages(include=["hydra_plugins.*"], exclude=["*__pycache__*"]),
    # Stated, not left implicit: setuptools installs editable through a path entry only when the whole
    # tree maps from one root ({"": ROOT}), not for an implicit flat layout (setuptools 84).
    package_dir={"": "."},
    cmdclass={"build_py": build_py_with_configs},
)
