"""The miners of one site (or address shard): asyncio fan-out, verification and ramping.

`AsicSite` is plain asyncio, so it runs the same inside a Ray actor (`actor.py`), on a
private event loop thread (`fleet.LocalSiteHandle`) or in a test. Every call to a miner
goes through `_call`: at most `io.concurrency` at once, each bounded by `io.timeout_s`,
retried `io.retries` times. A miner that fails is reported, never waited on.

Belief about each miner: what it reports, except just after we commanded it (a resumed
miner needs a minute to hash again). A command not visible in the readings after
`verify_after_s` was ignored: reported, and the miner counts as it really is, so the
next ramp step sends the command again and the power cap never relies on it.

A miner its range says is there (`AsicRange.every_address_a_miner`) is in the fleet from
the first cycle, answered or not: until it answers it is unreachable, named by its
configured model, so the power cap counts its nameplate draw and no command is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import numpy as np

from orchestrator.adapters.asic.driver import Handle, MinerDriver
from orchestrator.adapters.asic.ramp import RampWindow, plan_ramp_step
from orchestrator.adapters.asic.readings import MinerReading, unreachable
from orchestrator.models.asic_config import AsicConfig, AsicRange

log = logging.getLogger("hashpivot.asic.site")

T = TypeVar("T")


class MinerIOError(Exception):
    """A call to a miner failed after every retry."""


@dataclass(frozen=True, slots=True)
class MinerTarget:
    """What the plan wants from one miner, and what the ramp needs to order it."""

    mine: bool
    #: Value per watt while mining (USD/h per W): curtail lowest first, restore highest first.
    priority: float
    #: Draw added by mining rather than sleeping, W.
    delta_w: float


@dataclass(frozen=True, slots=True)
class MinerStatus:
    """One miner as the site sees it: what it said and what we believe it is doing."""

    reading: MinerReading
    site: str
    profile: str | None
    #: Hashing now, or commanded to and not yet due for verification.
    mining: bool
    #: When `mining` last changed (0: not since we started).
    since_s: float
    opt_out: bool
    protected: bool
    #: A curtail or resume the miner has not (yet) carried out: (want_mining, sent at).
    pending: tuple[bool, float] | None
    #: Commands the miner accepted and then did not carry out.
    ignored_commands: int
    #: Hashrate (TH/s) and draw (W) last measured while hashing: a sleeping miner is
    #: restored by what it really does, not by its nameplate.
    hashing_ths: float | None = None
    hashing_w: float | None = None
    #: Whether the miner has answered a read since the controller started.
    answered: bool = True


#: Why a configured miner that has not answered yet is unreachable.
NEVER_ANSWERED = "has not answered since the controller started"


@dataclass(frozen=True, slots=True)
class StepReport:
    """What one ramp step did."""

    at_s: float
    curtailed: tuple[str, ...] = ()
    resumed: tuple[str, ...] = ()
    #: Commands that failed or were refused by the miner: address → why.
    failed: dict[str, str] = field(default_factory=dict)
    #: Waiting for ramp budget or power headroom.
    waiting: tuple[str, ...] = ()
    #: Never commanded (opt-out, protected, unreachable): address → why.
    refused: dict[str, str] = field(default_factory=dict)
    moved_w: float = 0.0
    #: Miners the background ramp began switching since the previous report, with when
    #: (carrying out an earlier plan).
    ramped: tuple[tuple[str, float], ...] = ()


@dataclass
class _Slot:
    address: str
    spec: AsicRange
    site: int
    handle: Handle | None = None
    reading: MinerReading | None = None
    probed_at: float = -math.inf
    since_s: float = 0.0
    last_mining: bool | None = None
    commanded: tuple[bool, float] | None = None
    ignored: int = 0
    target: MinerTarget | None = None
    hashing_ths: float | None = None
    hashing_w: float | None = None
    answered: bool = False
    #: Why the last discovery found nothing (None: not probed, or found).
    discover_error: str | None = None


class AsicSite:
    """Miners of some address ranges; one instance per site (or shard) and event loop."""

    def __init__(
        self,
        config: AsicConfig,
        site_names: list[str],
        driver: MinerDriver,
        *,
        ranges: list[AsicRange] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.site_names = list(site_names)
        self.driver = driver
        self.clock = clock
        self.io = config.io
        index = {name: i for i, name in enumerate(self.site_names)}
        self._slots: dict[str, _Slot] = {}
        for spec in config.ranges if ranges is None else ranges:
            if spec.site not in index:
                raise ValueError(f"ASIC range site {spec.site!r} is not a configured site "
                                 f"({self.site_names})")
            for address in spec.expand():
                self._slots[address] = _Slot(address, spec, index[spec.site])
        self.opt_out = frozenset(config.opt_out)
        self.protected = frozenset(config.protected)
        self.window = RampWindow(config.ramp, len(self.site_names))
        self.headroom_w = np.full(len(self.site_names), np.inf)
        self.last_step: StepReport | None = None
        self.ignored_log: list[tuple[str, str]] = []
        # Miners the background ramp began switching since the controller last asked,
        # with when: they count against the switch budgets like the first step's.
        self._ramped: list[tuple[str, float]] = []
        self._sem: asyncio.Semaphore | None = None
        self._sem_loop: asyncio.AbstractEventLoop | None = None

    # -- I/O with limits ---------------------------------------------------------------

    @property
    def sem(self) -> asyncio.Semaphore:
        # A semaphore belongs to the loop that first uses it: one per loop.
        loop = asyncio.get_running_loop()
        if self._sem is None or self._sem_loop is not loop:
            self._sem = asyncio.Semaphore(self.io.concurrency)
            self._sem_loop = loop
        return self._sem

    async def _call(self, what: str, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        error = what
        for attempt in range(self.io.retries + 1):
            if attempt:
                await asyncio.sleep(self.io.retry_backoff_s)
            async with self.sem:
                try:
                    return await asyncio.wait_for(fn(*args), self.io.timeout_s)
                except TimeoutError:
                    error = f"{what}: no answer within {self.io.timeout_s:g} s"
                except Exception as exc:  # a miner's failure must not stop the fan-out
                    error = f"{what}: {type(exc).__name__}: {exc}"
        raise MinerIOError(error)

    # -- reading -----------------------------------------------------------------------

    @property
    def addresses(self) -> list[str]:
        return list(self._slots)

    async def refresh(self) -> list[MinerStatus]:
        """Find new miners (due addresses only) and read every known one, concurrently."""
        now = self.clock()
        due = [s for s in self._slots.values()
               if s.handle is None and now - s.probed_at >= self.io.rediscover_s]
        await asyncio.gather(*(self._discover(s, now) for s in due))
        known = [s for s in self._slots.values() if s.handle is not None]
        await asyncio.gather(*(self._read(s) for s in known))
        return self.statuses()

    async def _discover(self, slot: _Slot, now: float) -> None:
        slot.probed_at = now
        try:
            slot.handle = await self._call("discover", self.driver.connect, slot.address,
                                           slot.spec)
            slot.discover_error = None if slot.handle is not None else "no miner found"
        except MinerIOError as exc:
            slot.discover_error = str(exc)
            log.debug("%s: %s", slot.address, exc)

    async def _read(self, slot: _Slot) -> None:
        try:
            reading = await self._call("read", self.driver.read, slot.handle)
            if reading.address != slot.address:  # the row is named by its configured address
                reading = replace(reading, address=slot.address)
        except MinerIOError as exc:
            reading = unreachable(slot.address, self.clock(), str(exc))
        if not reading.reachable and slot.reading is not None:
            # Keep what the miner is, so it stays in the fleet (at full draw) while away.
            prev = slot.reading
            reading = replace(reading, make=prev.make, model=prev.model,
                              firmware=prev.firmware,
                              expected_hashrate_ths=prev.expected_hashrate_ths,
                              watts_limit=prev.watts_limit)
        if not reading.reachable and not slot.answered:
            reading = self._never_answered(slot, reading.error)
        slot.answered = slot.answered or reading.reachable
        slot.reading = reading
        if reading.reachable and reading.hashing and slot.commanded is None:
            slot.hashing_ths = reading.hashrate_ths or slot.hashing_ths
            slot.hashing_w = reading.watts or slot.hashing_w
        self._verify(slot, reading)

    def _verify(self, slot: _Slot, reading: MinerReading) -> None:
        now = self.clock()
        if slot.commanded is not None and reading.reachable:
            want, at = slot.commanded
            if reading.hashing == want:
                slot.commanded = None
            elif now - at >= self.config.verify_after_s:
                verb = "resume" if want else "curtail"
                detail = (f"still hashing {reading.hashrate_ths or 0:.1f} TH/s" if not want
                          else "still not hashing")
                why = f"ignored {verb} sent {now - at:.0f} s ago: {detail}"
                log.warning("%s: %s", slot.address, why)
                self.ignored_log.append((slot.address, why))
                del self.ignored_log[:-1000]
                slot.ignored += 1
                slot.commanded = None
        mining = self._mining(slot)
        if slot.last_mining is not None and mining != slot.last_mining:
            slot.since_s = now if slot.commanded is None else slot.commanded[1]
        slot.last_mining = mining

    def _mining(self, slot: _Slot) -> bool:
        if slot.commanded is not None:
            return slot.commanded[0]
        r = slot.reading
        # Unreachable: assume it draws full power; it is never counted as headroom.
        return True if r is None or not r.reachable else r.hashing

    def _never_answered(self, slot: _Slot, error: str | None) -> MinerReading:
        """The reading of a miner that has not answered yet: only what its range says
        (the model, when given), so the fleet counts it at that model's nameplate."""
        why = NEVER_ANSWERED + (f" ({error})" if error else "")
        return replace(unreachable(slot.address, self.clock(), why), model=slot.spec.model)

    def statuses(self) -> list[MinerStatus]:
        out = []
        for s in self._slots.values():
            if s.handle is None and s.reading is None:
                if not s.spec.every_address_a_miner:
                    continue  # a discovery range: an address that never answered is empty
                reading = self._never_answered(s, s.discover_error)
            else:
                reading = s.reading or self._never_answered(s, None)
            out.append(MinerStatus(
                reading=reading,
                site=self.site_names[s.site],
                profile=s.spec.profile,
                mining=self._mining(s),
                since_s=s.since_s,
                opt_out=s.address in self.opt_out,
                protected=s.address in self.protected,
                pending=s.commanded,
                ignored_commands=s.ignored,
                hashing_ths=s.hashing_ths,
                hashing_w=s.hashing_w,
                answered=s.answered,
            ))
        return out

    # -- acting ------------------------------------------------------------------------

    def set_targets(
        self, targets: dict[str, MinerTarget], headroom_w: dict[str, float] | None = None
    ) -> None:
        """The latest plan for these miners (level-based: replaces the previous one)."""
        for slot in self._slots.values():
            slot.target = targets.get(slot.address)
        self.headroom_w = np.full(len(self.site_names), np.inf)
        for name, watts in (headroom_w or {}).items():
            if name in self.site_names:
                self.headroom_w[self.site_names.index(name)] = watts

    def pending(self) -> int:
        """Miners whose target differs from what they are doing."""
        return sum(1 for s in self._slots.values()
                   if s.target is not None and s.target.mine != self._mining(s))

    async def step(self) -> StepReport:
        """One ramp step: plan it (`ramp.plan_ramp_step`), send it, record it."""
        now = self.clock()
        slots = [s for s in self._slots.values() if s.target is not None]
        targets = [s.target for s in slots if s.target is not None]
        refused: dict[str, str] = {}
        movable = np.zeros(len(slots), dtype=bool)
        mining = np.array([self._mining(s) for s in slots], dtype=bool)
        want = np.array([t.mine for t in targets], dtype=bool)
        for k in np.flatnonzero(mining != want):
            s = slots[int(k)]
            why = None
            if s.address in self.opt_out:
                why = "opt-out: never commanded"
            elif s.address in self.protected and not want[k]:
                why = "protected: never curtailed"
            elif s.handle is None or s.reading is None or not s.reading.reachable:
                why = "unreachable"
            if why is None:
                movable[k] = True
            else:
                refused[s.address] = why
        delta = np.array([t.delta_w for t in targets], dtype=np.float64)
        site = np.array([s.site for s in slots], dtype=np.int32)
        budget_w, budget_n = self.window.remaining(now)
        plan = plan_ramp_step(
            mining=mining, want_mining=want, movable=movable, delta_w=delta,
            priority=np.array([t.priority for t in targets], dtype=np.float64), site=site,
            budget_w=budget_w, budget_miners=budget_n, headroom_w=self.headroom_w,
        )
        cut = [slots[int(i)] for i in plan.curtail]
        res = [slots[int(i)] for i in plan.resume]
        results = await asyncio.gather(
            *(self._command(s, False) for s in cut), *(self._command(s, True) for s in res)
        )
        acted = cut + res
        moved = np.concatenate([plan.curtail, plan.resume]).astype(np.intp)
        # Failed commands count against the budget too: whether they took effect is unknown.
        self.window.record(now, site[moved], delta[moved])
        failed = {s.address: why for s, why in zip(acted, results, strict=True) if why}
        for s in res:
            assert s.target is not None
            if s.address not in failed:
                self.headroom_w[s.site] -= s.target.delta_w
        report = StepReport(
            at_s=now,
            curtailed=tuple(s.address for s in cut if s.address not in failed),
            resumed=tuple(s.address for s in res if s.address not in failed),
            failed=failed,
            waiting=tuple(slots[int(i)].address for i in plan.waiting),
            refused=refused,
            moved_w=float(delta[moved].sum()),
        )
        self.last_step = report
        return report

    async def _command(self, slot: _Slot, mine: bool) -> str | None:
        """Send one curtail or resume; None on success, else why it failed."""
        fn = self.driver.resume if mine else self.driver.curtail
        what = "resume" if mine else "curtail"
        try:
            accepted = await self._call(what, fn, slot.handle)
        except MinerIOError as exc:
            return str(exc)
        if not accepted:
            return f"{what}: refused by the miner"
        slot.commanded = (mine, self.clock())
        if slot.last_mining is not None and slot.last_mining != mine:
            slot.since_s = slot.commanded[1]
        slot.last_mining = mine
        return None

    async def set_power_target(self, address: str, watts: int) -> str | None:
        """Set one miner's power target; None on success, else why not."""
        slot = self._slots.get(address)
        if slot is None or slot.handle is None or slot.reading is None \
                or not slot.reading.reachable:
            return "unknown or unreachable miner"
        if address in self.opt_out:
            return "opt-out: never commanded"
        try:
            ok = await self._call("power target", self.driver.set_power_target, slot.handle,
                                  watts)
        except MinerIOError as exc:
            return str(exc)
        return None if ok else "power target not supported or refused by the firmware"

    def take_ramped(self) -> tuple[tuple[str, float], ...]:
        """The miners the background ramp began switching since the last call, with the
        time of each step; cleared by the call."""
        out, self._ramped = tuple(self._ramped), []
        return out

    async def run_ramp(self, stop: asyncio.Event) -> None:
        """Step every `ramp.step_s` while targets are pending, until `stop` is set."""
        while not stop.is_set():
            if self.pending():
                try:
                    report = await self.step()
                except Exception:  # the loop must outlive a bad step
                    log.exception("ramp step failed")
                else:
                    self._ramped += [(a, report.at_s) for a in (*report.curtailed,
                                                                 *report.resumed)]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.config.ramp.step_s)
