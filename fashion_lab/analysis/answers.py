"""The answers a sweep's numbers give: the budget, the reference levels, the effects in sentences,
the next step, and the cells still undecided.

Pure pandas and the design-aware statistics of analysis.stats, fed the runs' table; shared by the
report, the end of a sweep and the until_sure sweeper (which adds seeds where they are undecided).
"""

from __future__ import annotations

from typing import List, Optional

import pandas as pd

from fashion_lab.analysis import stats
from fashion_lab.config.keys import typed

METRICS = {"test_accuracy": "test accuracy", "best_val_accuracy": "validation accuracy"}
# Params that never define a factor: replication, bookkeeping, where things are stored.
NOT_FACTORS = ("trainer.seed", "trainer.verbose", "tracking.", "report.", "reproduce.", "ui.", "sweep.",
               "data.cache", "data.dir")

def base_level(frame: pd.DataFrame, key: str, defaults: dict):
    """The tutorial's value of ``key`` if the sweep has it, else the first level."""
    levels = sorted(frame[key].dropna().unique(), key=str)
    default = defaults.get(key, defaults.get(f"{key}.name"))  # a group choice (optimizer) is its .name
    for level in levels:
        if default is not None and str(level) == str(typed(str(default))):
            return level
        if default is not None and isinstance(level, (int, float)) and isinstance(default, (int, float)) \
                and float(level) == float(default):
            return level
    return levels[0] if levels else None


def undecided_cells(rows: List[dict], keys: List[str], references: dict, metric: str) -> set:
    """Cells (tuples of the swept values, as text) that belong to a comparison whose interval spans 0."""
    frame = pd.DataFrame(rows)
    if frame.empty or metric not in frame:
        return set()
    cells = set()
    for effect in stats.effects(frame, keys, references, [metric]):
        if effect.verdict in ("detected", "confounded"):
            continue
        pair = {str(effect.level), str(effect.reference)}
        for values in frame[keys].astype(str).drop_duplicates().itertuples(index=False):
            if str(values[keys.index(effect.factor)]) in pair:
                cells.add(tuple(values))
    return cells


def budget(finished: pd.DataFrame, keys: list[str]) -> dict:
    """What the evidence is: seeds per cell, epochs, and images, read from the runs."""
    seed = stats.seed_column(finished)
    if keys and seed:
        per_cell = finished.groupby([finished[k].astype(str) for k in keys])[seed].nunique()
        seeds = (int(per_cell.min()), int(per_cell.max()))
    else:
        seeds = (int(finished[seed].nunique()),) * 2 if seed else (1, 1)

    def values(column):
        return sorted({int(v) for v in finished[column].dropna()}) if column in finished else []

    return {"runs": len(finished), "cells": int(finished[keys].astype(str).drop_duplicates().shape[0]) if keys else 1,
            "seeds": seeds, "epochs": values("epochs_completed") or values("trainer.epochs"),
            "train_images": values("train_images") or _images(finished, "train"),
            "test_images": values("test_images") or _images(finished, "test")}


def _images(finished: pd.DataFrame, split: str) -> list[int]:
    """Image counts from the data params, for runs recorded before train_images/test_images were metrics."""
    def number(value):
        return None if value is None or value != value else int(value)

    counts = set()
    for _, row in finished.iterrows():
        name = row.get("data.name")
        if name not in ("synthetic", "fashion_mnist"):
            continue
        synthetic = name == "synthetic"
        if split == "test":
            n = number(row.get("data.synthetic_test")) if synthetic else 10000
        else:
            n = number(row.get("data.train_samples"))
            pool, val = number(row.get("data.synthetic_train")) if synthetic else 60000, number(row.get("data.val_samples"))
            if n is None and pool is not None and val is not None:
                n = pool - val
        if n is not None:
            counts.add(n)
    return sorted(counts)


def _span(values) -> str:
    values = list(values)
    if not values:
        return "not recorded"
    return f"{values[0]:,}" if len(set(values)) == 1 else f"{min(values):,} to {max(values):,}"


def budget_sentence(b: dict) -> str:
    seeds = f"{b['seeds'][0]}" if b["seeds"][0] == b["seeds"][1] else f"{b['seeds'][0]} to {b['seeds'][1]}"
    def count(values, unit):
        return f"{_span(values)} {unit}" if values else f"{unit} not recorded"

    return (f"Budget: {b['runs']} finished runs, {b['cells']} cells, {seeds} seed(s) per cell, "
            f"{count(b['epochs'], 'epoch(s)')}, {count(b['train_images'], 'training images')}, "
            f"{count(b['test_images'], 'test images')}.")


def caveat(b: dict) -> str:
    """What the budget means for the answer."""
    words = []
    if b["seeds"][0] < 2:
        words.append("cells with a single seed give no confidence")
    if b["epochs"] and max(b["epochs"]) < 10:
        words.append(f"{max(b['epochs'])} epochs is short of convergence: effects on the fully trained network "
                     f"can differ")
    if b["train_images"] and max(b["train_images"]) < 55000:
        words.append("a subset of the training data, not all 55,000 images")
    return ("Caveat: " + "; ".join(words) + ".") if words else ""


def analyse(finished: pd.DataFrame, keys: list[str], strategy: str, defaults: dict,
            target: float = 0.005) -> dict:
    """Effects, interactions and the sentences for ``finished`` runs (the report's and the sweep's answer)."""
    references = {key: base_level(finished, key, defaults) for key in keys}
    found = stats.effects(finished, keys, references, list(METRICS), strategy=strategy)
    confounded = {e.factor: e for e in found if e.confounded and e.metric == "test_accuracy"}
    sentences = [f"{stats.short(f)}: confounded, no estimate: {e.reason}." for f, e in confounded.items()]
    sentences += [stats.sentence(e, METRICS[e.metric]) for e in found if e.metric == "test_accuracy"
                  and e.factor not in confounded]
    sentences += [stats.sentence(e, METRICS[e.metric]) for e in found if e.metric != "test_accuracy"
                  and e.factor not in confounded]
    found_interactions = [] if strategy != "grid" else [
        i for m in METRICS for i in stats.interactions(finished, keys, references, m)]
    sentences += [stats.interaction_sentence(i, METRICS[i.metric]) for i in found_interactions if i.detected]
    sensitivity = [text for e in found if e.metric == "test_accuracy"
                   for text in [stats.sensitivity(e, target)] if text]
    return {"references": references, "effects": found, "interactions": found_interactions,
            "sentences": sentences, "sensitivity": sensitivity}


def answer_lines(finished: pd.DataFrame, keys: list[str], strategy: str, defaults: dict,
                 target: float = 0.005, plan: Optional[dict] = None, also: Optional[dict] = None) -> list[str]:
    """Budget, the answers on test accuracy, what else each comparison changes, what the design could
    detect, the caveat and (with ``plan``) the next step and its cost."""
    keys = [k for k in keys if not k.startswith(NOT_FACTORS)]
    if finished.empty:
        return ["No run finished: nothing to answer."]
    b = budget(finished, keys)
    found = analyse(finished, keys, strategy, defaults, target)
    lines = [budget_sentence(b)]
    lines += [s for s in found["sentences"] if "test accuracy" in s] or ["Nothing was swept: no effect to state."]
    lines += also_lines(found["effects"], also) if also is not None else []
    lines += found["sensitivity"]
    lines += [caveat(b)] if caveat(b) else []
    lines += [next_step(found["effects"], b, target, plan)] if plan else []
    return lines


def also_lines(found: list, also: dict) -> list[str]:
    """One line per comparison: the other keys of the composed config that differ between its two levels
    (``optimizer=adam`` vs ``sgd`` also changes the learning rate and the momentum)."""
    lines = []
    for e in found:
        if e.metric != "test_accuracy" or e.confounded:
            continue
        differ = also.get((e.factor, str(e.level), str(e.reference)))
        if differ is None:
            continue
        what = f"{stats.short(e.factor)} {e.level} (vs {e.reference})"
        lines.append(f"{what} also changes " + ", ".join(f"{k} ({a} vs {b})" for k, (a, b) in differ.items()) + "."
                     if differ else f"{what} changes nothing else in the composed config.")
    return lines


def _minutes(seconds: float) -> str:
    return f"about {max(1, round(seconds / 60)):,} min" if seconds < 5400 else f"about {seconds / 3600:.1f} h"


def next_step(found: list, b: dict, target: float, plan: dict) -> str:
    """What to run next and what it costs here, from this sweep's own run durations (``plan["run_seconds"]``):
    more seeds (sweep.until_sure) where a comparison is undecided, else the full data and 10 epochs."""
    seconds, command = plan["run_seconds"], plan["command"]
    undecided = [e for e in found if e.metric == "test_accuracy" and e.has_ci and not e.detected and e.sd > 0]
    if undecided:
        need = max((e.seeds_for(target) or 100_000) for e in undecided)
        lead = ""
        if need <= b["seeds"][0]:  # powered for the target already: an effect that size would have shown
            lead = (f"these seeds already detect \u00b1{target * 100:.1f} pt, so any difference is smaller; ")
            target /= 2
            need = max((e.seeds_for(target) or 100_000) for e in undecided)
        # a resumed until_sure sweep re-uses the seeds it ran; any other command runs every seed anew
        runs = b["cells"] * max(0, need - (b["seeds"][0] if plan.get("resumes") else 0))
        return (f"Next: {lead}to detect \u00b1{target * 100:.1f} pt: about {stats.count(need)} seeds per level, "
                f"{runs:,} more runs, {_minutes(runs * seconds)} here ({seconds:.0f} s per run in this sweep): "
                f"{command} {plan['until_sure']} sweep.seeds={b['seeds'][0]} sweep.max_seeds={need}")
    epochs, images = max(b["epochs"] or [10]), max(b["train_images"] or [55000])
    if epochs >= 10 and images >= 55000:
        return "Next: every comparison is decided at full size; the full report below has the details."
    scale = max(1.0, 10 / epochs) * max(1.0, 55000 / images)  # run time grows with epochs x images
    full = " ".join(o for o in (command, "data=fashion_mnist" if images < 55000 else "",
                                "trainer.epochs=10" if epochs < 10 else "") if o)
    return (f"Next: decided at this budget; to see whether it holds fully trained (55,000 images, 10 epochs): "
            f"{_minutes(b['runs'] * seconds * scale)} here (this sweep's {seconds:.0f} s per run, scaled by "
            f"epochs x images): {full}")


def children_frame(children: list[dict], keys: list[str]) -> pd.DataFrame:
    """A sweep's finished points as a runs table (swept values, seed, final metrics), from the sweep's own record."""
    rows = []
    for child in children:
        if child.get("status") != "FINISHED":
            continue
        values = child["overrides"] if isinstance(child["overrides"], dict) else dict(
            o.split("=", 1) for o in child["overrides"] if "=" in o)
        values = {k.lstrip("+~"): v for k, v in values.items()}
        row = {k: typed(values.get(k)) for k in keys}
        row["seed"] = typed(values.get("trainer.seed"))
        row.update(child.get("metrics") or {})
        rows.append(row)
    return pd.DataFrame(rows)


def sweep_end_lines(children: list[dict], keys: list[str], defaults: dict, best: Optional[tuple[str, float]],
                    report_command: Optional[str], plan: Optional[dict] = None,
                    also: Optional[dict] = None) -> list[str]:
    """What a grid sweep prints last: the answer, how sure the top point is, where the full report is.
    A sweep's answer aims at +-1 pt (a newcomer's budget); the report keeps +-0.5 pt."""
    finished = children_frame(children, keys)
    seconds = [c["seconds"] for c in children if c.get("status") == "FINISHED" and c.get("seconds")]
    plan = {**plan, "run_seconds": sum(seconds) / len(seconds)} if plan and seconds else None
    lines = ["", "Answer:"] + [f"  {line}" for line in answer_lines(finished, keys, "grid", defaults, 0.01, plan,
                                                                   also)]
    if best is not None:
        lines.append(f"Highest val_accuracy: {best[0]} ({best[1]:.4f}). That ranks single runs; only the matched "
                     f"comparisons above say how sure a difference is.")
    if report_command:
        lines.append(f"Full report (effects.csv, plots): {report_command}")
    return lines


def _effects_table(found: list) -> pd.DataFrame:
    frame = stats.effects_frame(found)
    for column in ("diff", "ci_low", "ci_high"):
        frame[column] = frame[column].map(lambda v: "" if v != v else stats.pt(v))
    frame = frame.rename(columns={"diff": "diff (pt)", "ci_low": "CI low (pt)", "ci_high": "CI high (pt)",
                                  "n": "pairs"})
    return frame


def search_caveat(trials: int, executions: int) -> str:
    """What a search's "best trial" is, and is not: the top of single evaluations, with no interval."""
    each = "one run" if executions == 1 else f"the mean of {executions} runs"
    return (f"How sure: this is the highest of {trials} trials, each {each}; a search tests no difference, "
            f"so its lead is unmeasured. Re-run the top configurations as a grid with sweep.seeds=3 to know.")
