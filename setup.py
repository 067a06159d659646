"""The one part of the build that pyproject.toml can't state: the package list, computed from the tree.

``conf/`` and ``sweeps/`` stay at the top of the repository (Hydra, the docs and the tests point
there) and ship inside the wheel as data-only subpackages ``fashion_lab._conf`` and
``fashion_lab._sweeps``, every ``*.yaml`` at every depth, so a non-editable install finds its configs
next to its code. ``fashion_lab/config.py`` uses the checkout's folders when it runs from one (an
editable install) and these copies otherwise. Each config group folder (conf/data, conf/model, ...)
is listed as a package, found here rather than by hand, so a new group ships without an edit.
Everything else (metadata, dependencies, entry points) is in pyproject.toml.
"""

from setuptools import find_namespace_packages, find_packages, setup

DATA_PACKAGES = {"fashion_lab._conf": "conf", "fashion_lab._sweeps": "sweeps"}


def data_packages(package: str, folder: str) -> list[str]:
    """``package`` and one subpackage per subfolder of ``folder`` (no __init__.py needed)."""
    subfolders = find_namespace_packages(where=folder, exclude=["*__pycache__*"])
    return [package] + [f"{package}.{sub}" for sub in subfolders]


DATA = [name for package, folder in DATA_PACKAGES.items() for name in data_packages(package, folder)]

setup(
    # hydra_plugins is Hydra's namespace package (no __init__.py): our sweepers ship in it.
    packages=find_packages(include=["fashion_lab", "fashion_lab.*"])
    + find_namespace_packages(include=["hydra_plugins.*"], exclude=["*__pycache__*"]) + DATA,
    package_dir=DATA_PACKAGES,
    package_data={name: ["*.yaml"] for name in DATA},
)
