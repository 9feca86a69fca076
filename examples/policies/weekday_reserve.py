"""Keep GPU nodes free for AI on weekday afternoons, in each site's local time.

AI customers book capacity for their working hours; a host that promised them GPUs from
13:00 to 18:00 on weekdays keeps those nodes out of mining then, even when mining pays
more for the hour. The window follows each site's own clock (`sites[].timezone`), so a
Texas site and a Berlin site reserve their own afternoons, daylight-saving changes
included. Outside the window every node takes its best mode.

    hashpivot policies check examples/policies/weekday_reserve.py
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import Field, model_validator

from orchestrator.framework import DecisionContext, Policy, PolicyDecision, PolicyParams, Reason
from orchestrator.framework.context import best_mode
from orchestrator.models import Mode


class WeekdayReserveParams(PolicyParams):
    starts_h: int = Field(default=13, ge=0, le=23, description="First reserved local hour.")
    ends_h: int = Field(default=18, ge=1, le=24, description="First local hour after it.")
    weekdays: list[int] = Field(
        default=[0, 1, 2, 3, 4], description="Reserved days, 0 = Monday … 6 = Sunday.")

    @model_validator(mode="after")
    def _window(self) -> WeekdayReserveParams:
        if self.ends_h <= self.starts_h:
            raise ValueError("ends_h must be after starts_h")
        if any(d < 0 or d > 6 for d in self.weekdays):
            raise ValueError("weekdays are 0 (Monday) to 6 (Sunday)")
        return self


class WeekdayReserve(Policy):
    name: ClassVar[str] = "weekday-reserve"
    summary: ClassVar[str] = "GPU nodes kept for AI on weekday afternoons, site local time"
    Params = WeekdayReserveParams

    def decide(self, ctx: DecisionContext) -> PolicyDecision:
        p = self.params
        assert isinstance(p, WeekdayReserveParams)
        hour, weekday = ctx.node_local_time()
        reserved = (p.starts_h <= hour) & (hour < p.ends_h) & np.isin(weekday, p.weekdays)
        best, _ = best_mode(ctx.scores)
        gpu = ~ctx.fleet.is_asic()
        keep_for_ai = gpu & reserved
        target = np.where(keep_for_ai, Mode.AI, best).astype(np.int8)
        reason = np.where(target == ctx.current, Reason.UNCHANGED, Reason.HIGHER_VALUE)
        return PolicyDecision(target=target, reason=reason.astype(np.int16))
