"""What a raced grid (``sweep.race=true``) records and says: the tags of each rung's runs, which runs the
answer may use (the full budget only), and the lines naming every stopped arm and the epochs saved.

The sweeper (hydra_plugins/fashion_lab_race) decides and writes the tags named here; this module reads them, so
the end-of-sweep answer and the report read the same tags. Pure: plain dicts in, lines out.
"""

from __future__ import annotations

from typing import Any, Optional

from fashion_lab.analysis import racing

PREFIX = "race."
RUNG, RUNGS, EPOCH = PREFIX + "rung", PREFIX + "rungs", PREFIX + "epoch"
STOPPED_AT_RUNG, STOPPED_AT_EPOCH, EVIDENCE = PREFIX + "stopped_at_rung", PREFIX + "stopped_at_epoch", PREFIX + "evidence"


def of(tags: dict[str, str], tag: str = "fashion_lab.") -> dict[str, str]:
    """A run's race tags, without the package prefix (record.names.TAG)."""
    return {k[len(tag):]: v for k, v in tags.items() if k.startswith(tag + PREFIX)}


def rung_tags(rung: int, rungs: int, epoch: int) -> dict[str, str]:
    """Every run of a race: which rung (from 1) of how many, at which epoch."""
    return {RUNG: str(rung), RUNGS: str(rungs), EPOCH: str(epoch)}


def stop_tags(stop: racing.Stop) -> dict[str, str]:
    """The runs of an arm stopped at a rung: where, and the evidence (the bound that stopped it)."""
    return {STOPPED_AT_RUNG: str(stop.rung), STOPPED_AT_EPOCH: str(stop.epoch), EVIDENCE: stop.evidence(),
            PREFIX + "bound": f"{stop.bound:.6f}", PREFIX + "versus": stop.versus}


def full_budget(tags: dict[str, Any]) -> bool:
    """A run the answer may use: not raced, or of the race's last rung (the full budget)."""
    return RUNG not in tags or tags.get(RUNG) == tags.get(RUNGS)


def _arm(child: dict[str, Any], keys: list[str]) -> str:
    values = dict(o.split("=", 1) for o in child.get("overrides", []) if "=" in o)
    return " ".join(f"{k.rsplit('.', 1)[-1]}={values[k]}" for k in keys if k in values and k != "trainer.seed")


def race_lines(children: list[dict[str, Any]], keys: list[str], epochs: int) -> Optional[list[str]]:
    """The race's lines after the answer, or None if the sweep did not race: every stopped arm with its
    rung, epoch and evidence, and the epochs trained against the full grid's."""
    raced = [c for c in children if RUNG in (c.get("tags") or {})]
    if not raced:
        return None
    stopped: dict[str, dict] = {}
    reached: dict[tuple, int] = {}
    for child in raced:
        tags, arm = child["tags"], _arm(child, keys)
        if STOPPED_AT_RUNG in tags:
            stopped.setdefault(arm, tags)
        seed = dict(o.split("=", 1) for o in child.get("overrides", []) if "=" in o).get("trainer.seed")
        done = int(float((child.get("metrics") or {}).get("epochs_completed", 0)))
        reached[(arm, seed)] = max(reached.get((arm, seed), 0), done)
    lines = ["Racing (sweep.race=true): the answer above uses only the arms that reached the full budget of "
             f"{epochs} epochs."]
    for arm, tags in sorted(stopped.items(), key=lambda item: int(item[1][STOPPED_AT_RUNG])):
        lines.append(f"  stopped: {arm} at rung {tags[STOPPED_AT_RUNG]} (epoch {tags[STOPPED_AT_EPOCH]}): "
                     f"{tags[EVIDENCE]}; no full-budget effect is stated for it.")
    if not stopped:
        lines.append("  no arm was stopped: every arm reached the full budget.")
    share = racing.epochs_share(list(reached.values()), epochs)
    lines.append(f"  epochs trained: {sum(reached.values())} of the full grid's {len(reached) * epochs} "
                 f"({share:.0%}); the rule's false-stop rate for an equal arm is at most "
                 f"{racing.ALPHA:.0%}, and an arm that learns slowly but ends better may be stopped (docs/sweeps.md).")
    return lines
