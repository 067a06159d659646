"""One command owns a sweep at a time: a lease on its parent run, kept fresh by a heartbeat.

MLflow has no compare-and-swap, so a command never overwrites another's claim: each writes its own tag
``fashion_lab.lease.<token>`` (host, pid, since, last heartbeat, state) on the parent it found or created,
waits ``SETTLE_S`` for every other claim to become visible, then reads all the live claims on the
sweep's parents (tag ``campaign_key``). An already ``held`` lease wins; else the earliest claim (since,
then token), so every contender decides alike. The loser withdraws its claim (and deletes the parent it
made) before anything trains. The winner marks its lease ``held`` and a daemon thread refreshes its
heartbeat every ``HEARTBEAT_S``. As in Optuna's RDB storage (heartbeat_interval, grace_period), a lease is
stale when its heartbeat is older than ``GRACE_S``; on this host also, at once, when its process has ended
(kill -9). A stale lease is taken over. Safe as long as the winner's ``held`` write lands within ``SETTLE_S``
of its decision (a rival that missed it then sees it, whatever its own claim's time) and host clocks
agree within ``GRACE_S``.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Optional

from fashion_lab.record.client import client, client_for, ensure_experiment
from fashion_lab.record.names import TAG
from fashion_lab.record.owners import owner_alive, process_id

HEARTBEAT_S = 10.0  # how often the owner refreshes its lease
GRACE_S = 60.0      # a lease without a heartbeat for this long is stale (another host's owner is presumed dead)
SETTLE_S = 2.0      # how long a claim waits for rival claims to show before deciding
PREFIX = TAG + "lease."
CAMPAIGN_KEY = TAG + "campaign_key"

_HELD: dict[str, tuple["Lease", threading.Event]] = {}  # parent run id -> this process's lease, its stop flag


@dataclass
class Lease:
    token: str
    host: str
    owner: str          # pid:start time, as process_id() writes it
    since: float        # epoch seconds of the claim
    heartbeat: float    # epoch seconds of the last heartbeat
    state: str = "claim"  # claim (deciding) | held (owns the sweep)
    run_id: str = ""

    @classmethod
    def mine(cls) -> "Lease":
        now = time.time()
        return cls(uuid.uuid4().hex[:16], socket.gethostname(), process_id(), now, now)

    @property
    def tag(self) -> str:
        return PREFIX + self.token

    def value(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if k not in ("token", "run_id")}, sort_keys=True)

    @classmethod
    def parse(cls, run_id: str, key: str, value: str) -> Optional["Lease"]:
        try:
            fields = json.loads(value)
            return cls(token=key[len(PREFIX):], run_id=run_id, host=str(fields["host"]), owner=str(fields["owner"]),
                       since=float(fields["since"]), heartbeat=float(fields["heartbeat"]), state=str(fields["state"]))
        except (ValueError, KeyError, TypeError):
            return None  # not ours to read: treated as no lease

    def stale(self, now: float) -> Optional[str]:
        """Why this lease no longer holds, or None while it does."""
        if self.host == socket.gethostname() and not owner_alive(self.owner):
            return "its process has ended"
        if now - self.heartbeat > GRACE_S:
            return f"no heartbeat for {now - self.heartbeat:.0f} s (stale after {GRACE_S:.0f} s)"
        return None

    def describe(self, now: float) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.since))
        return (f"host {self.host}, pid {self.owner.partition(':')[0]}, since {since}, "
                f"last heartbeat {max(0.0, now - self.heartbeat):.0f} s ago (parent run {self.run_id})")


class Busy(Exception):
    """Another live command owns this sweep; the message names it."""

    def __init__(self, holder: Lease, what: str):
        super().__init__(
            f"{what} is already running: owned by {holder.describe(time.time())}; this command exits and trains "
            f"nothing. Run it again when that one has ended (it then resumes); a lease is taken over once its "
            f"process on this host has ended, or after {GRACE_S:.0f} s without a heartbeat")
        self.holder = holder


def leases(tracking_cfg, key: str) -> list[Lease]:
    """Every lease tag on the active parents of the sweep ``key``."""
    store = client_for(tracking_cfg)
    runs = store.search_runs([ensure_experiment(store, tracking_cfg)], f"tags.`{CAMPAIGN_KEY}` = '{key}'",
                             max_results=1000)
    found = [Lease.parse(r.info.run_id, k, v) for r in runs for k, v in r.data.tags.items() if k.startswith(PREFIX)]
    return [lease for lease in found if lease is not None]


def check_free(tracking_cfg, key: str, what: str) -> None:
    """Refuse (``Busy``) before writing anything when a live command already holds the sweep."""
    now = time.time()
    live = sorted((x for x in leases(tracking_cfg, key) if x.stale(now) is None), key=_order)
    if live:
        raise Busy(live[0], what)


def claim(tracking_cfg, run_id: str, lease: Lease) -> None:
    lease.run_id = run_id
    client_for(tracking_cfg).set_tag(run_id, lease.tag, lease.value())


def decide(tracking_cfg, key: str, lease: Lease, what: str, created: bool) -> list[str]:
    """After ``SETTLE_S``: hold the sweep (heartbeat started; returns what was taken over) or withdraw and
    raise ``Busy`` naming the winner."""
    time.sleep(SETTLE_S)
    now, rivals, stale = time.time(), [], []
    for other in leases(tracking_cfg, key):
        reason = other.stale(now) if other.token != lease.token else None
        if reason is None:
            rivals.append(other)
        else:
            stale.append((other, reason))
    if all(x.token != lease.token for x in rivals):
        rivals.append(lease)  # our own claim, even where the store's answer lagged behind our write
    held = [x for x in rivals if x.state == "held" and x.token != lease.token]
    winner = min(held or rivals, key=_order)
    if winner.token != lease.token:
        _withdraw(tracking_cfg, lease, winner, created)
        raise Busy(winner, what)
    lease.state, lease.heartbeat = "held", time.time()
    store = client_for(tracking_cfg)
    store.set_tag(lease.run_id, lease.tag, lease.value())
    for old, _ in stale:  # what it took over: those claims no longer mean anything
        try:
            store.delete_tag(old.run_id, old.tag)
        except Exception:  # noqa: BLE001 - already removed by another taker
            pass
    stop = threading.Event()
    _HELD[lease.run_id] = (lease, stop)
    threading.Thread(target=_beat, args=(tracking_cfg.uri, lease, stop), daemon=True,
                     name=f"fashion-lab lease {lease.run_id}").start()
    return [f"{old.describe(now)}: {reason}" for old, reason in stale]


def _order(lease: Lease) -> tuple:
    return (lease.since, lease.token)


def _withdraw(tracking_cfg, lease: Lease, winner: Lease, created: bool) -> None:
    """The loser leaves nothing behind: its claim removed, the parent it made closed and deleted."""
    store = client_for(tracking_cfg)
    if not created:
        store.delete_tag(lease.run_id, lease.tag)
        return
    store.set_tag(lease.run_id, TAG + "failure", f"lost the start to parent run {winner.run_id}")
    store.set_terminated(lease.run_id, status="KILLED")
    run = store.get_run(lease.run_id)
    store.delete_run(lease.run_id)
    from fashion_lab.record.names import SHARED_VIEW

    try:
        store.delete_experiment_tag(run.info.experiment_id, SHARED_VIEW + lease.run_id)
    except Exception:  # noqa: BLE001 - only the UI's saved view of a deleted run
        pass


def _beat(uri: str, lease: Lease, stop: threading.Event) -> None:
    """The heartbeat: refresh the lease until released; stop, and say so, if it was taken over."""
    store, warned = client(uri), False
    while not stop.wait(HEARTBEAT_S):
        try:
            if lease.tag not in store.get_run(lease.run_id).data.tags:
                print(f"fashion-lab: warning: the lease on parent run {lease.run_id} was taken over (no heartbeat "
                      f"for {GRACE_S:.0f} s?); another command may now run this sweep", file=sys.stderr)
                return
            lease.heartbeat = time.time()
            store.set_tag(lease.run_id, lease.tag, lease.value())
        except Exception as error:  # noqa: BLE001 - a missed heartbeat is retried; the sweep goes on
            if not warned:
                print(f"fashion-lab: warning: lease heartbeat failed: {type(error).__name__}: "
                      f"{str(error).splitlines()[0] if str(error) else ''}", file=sys.stderr)
                warned = True


def release(store, run_id: str) -> None:
    """Stop this process's heartbeat on ``run_id`` and remove its lease (nothing if it holds none)."""
    held = _HELD.pop(run_id, None)
    if held is None:
        return
    lease, stop = held
    stop.set()
    try:
        store.delete_tag(run_id, lease.tag)
    except Exception:  # noqa: BLE001 - a lease left behind goes stale by itself
        pass
