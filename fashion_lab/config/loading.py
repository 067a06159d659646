"""Where the configs live (conf/, sweeps/), loading sweep files through the guard, registration and compose()."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from fashion_lab.config.schema import Config, ConfigError
from fashion_lab.config.sweep_guard import OWN_TARGETS, sweep_code, sweep_problem  # noqa: F401 - re-exported

PACKAGE_DIR = Path(__file__).resolve().parent.parent  # fashion_lab/, above this config/ package
# The repository root when this runs from a checkout (an editable install, the tests, the notebooks);
# for a regular install it is only the folder that holds the package (site-packages).
REPO_DIR = PACKAGE_DIR.parent
# A checkout: conf/ and sweeps/ sit next to the package, with the project file. An installed wheel
# carries copies inside the package instead (fashion_lab/_conf, fashion_lab/_sweeps; see setup.py).
# pyproject.toml is checked too so that a stray top-level "conf" in site-packages is never taken.
FROM_CHECKOUT = (REPO_DIR / "pyproject.toml").is_file() and (REPO_DIR / "conf" / "config.yaml").is_file()


def _packaged(name: str) -> Path:
    """The copy of a data folder that ships in the wheel. Hydra needs a real folder, which a normal
    (unzipped) install has; a zip import would give a path Hydra reports as not found."""
    from importlib.resources import files

    return Path(str(files("fashion_lab") / name))


CONF_DIR = REPO_DIR / "conf" if FROM_CHECKOUT else _packaged("_conf")
SWEEPS_DIR = REPO_DIR / "sweeps" if FROM_CHECKOUT else _packaged("_sweeps")


EXTRA_SWEEPS_ENV = "FASHION_LAB_SWEEPS_DIR"  # a second folder of sweep files (private spaces, tests)


def sweep_dirs() -> list[Path]:
    """Where sweep files are read from: ``sweeps/`` (the wheel's copy when installed), then
    ``$FASHION_LAB_SWEEPS_DIR`` (same names win)."""
    extra = os.environ.get(EXTRA_SWEEPS_ENV)
    return [SWEEPS_DIR] + ([Path(extra)] if extra else [])


def sweep_files() -> dict[str, Path]:
    """Every sweep file by name."""
    return {p.stem: p for folder in sweep_dirs() for p in sorted(Path(folder).glob("*.yaml"))}


REFUSED_SWEEPS: dict[str, str] = {}  # name -> why, filled by register_configs


def _conf_groups() -> tuple[str, ...]:
    """conf/'s config groups: what a sweep file's defaults may choose (with hydra/launcher, hydra/sweeper)."""
    return tuple(sorted(p.name for p in CONF_DIR.iterdir() if p.is_dir()))


def _load_sweep(path: Path) -> tuple[Optional[DictConfig], Optional[str]]:
    """A sweep file and why it is refused (None when it is data only). A broken file is refused,
    never raised: it must not stop commands that do not use it."""
    try:
        node = OmegaConf.load(path)
    except Exception as error:  # noqa: BLE001 - yaml.YAMLError, a bad encoding, an unreadable file
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return None, f"it is not valid YAML ({first})"
    return node, sweep_problem(node, _conf_groups())


def register_configs() -> None:
    """Register the schema, and every sweep file NAME.yaml as option NAME of the ``sweep`` group.

    Sweep files live at the top level (``sweeps/``) but compose like any config group:
    ``fashion-lab train -m sweep=bn_placement`` is what ``fashion-lab sweep bn_placement`` runs.
    """
    cs = ConfigStore.instance()
    cs.store(name="fashion_lab_schema", node=Config)
    REFUSED_SWEEPS.clear()
    for name, path in sweep_files().items():
        node, problem = _load_sweep(path)
        if problem:  # never registered: nothing can compose it
            REFUSED_SWEEPS[name] = f"sweep={name}: {path} is refused: {problem}"
            continue
        OmegaConf.update(node, "sweep.name", name, force_add=True)
        cs.store(group="sweep", name=name, node=node, package="_global_")


def check_sweep(name: str) -> None:
    """Refuse a sweep file the guard refused (register_configs first), in one line naming key and file."""
    if name in REFUSED_SWEEPS:
        raise ConfigError(REFUSED_SWEEPS[name])


def compose(overrides=(), return_hydra_config: bool = False) -> DictConfig:
    """The config ``fashion-lab train <overrides>`` runs, via Hydra's compose API on ``conf/``."""
    from hydra import compose as hydra_compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_configs()
    if GlobalHydra.instance().is_initialized():  # called from inside a running Hydra command
        GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=list(overrides),
                             return_hydra_config=return_hydra_config)


# Paths a job reads or writes, relative to the folder the command was started in.
RELATIVE_PATHS = ("data.dir", "tracking.offline_dir", "tracking.artifact_location", "tuner.directory")


def absolute_paths(cfg: DictConfig) -> None:
    """With ``hydra.job.chdir=true`` each job runs in its own output folder: its relative store, data
    folder and spool are turned back into the folders the command was started in
    (hydra.utils.to_absolute_path), on every launcher, so the jobs and the sweep share one store."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import to_absolute_path
    from omegaconf import open_dict

    if not HydraConfig.initialized() or not HydraConfig.get().job.get("chdir"):
        return  # the job runs where the command started: relative paths already mean that folder
    with open_dict(cfg):
        uri = str(cfg.tracking.uri)
        if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
            path, sep, query = uri[len("sqlite:///"):].partition("?")
            cfg.tracking.uri = "sqlite:///" + to_absolute_path(path) + sep + query
        for key in RELATIVE_PATHS:
            value = OmegaConf.select(cfg, key)
            if isinstance(value, str) and value and "://" not in value and not value.startswith(("/", "~")):
                OmegaConf.update(cfg, key, to_absolute_path(value))
