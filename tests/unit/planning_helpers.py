"""Small plan files derived from the shipped 20 MW example, for quick runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

EXAMPLE = Path(__file__).parents[2] / "examples" / "conversion"


def small_plan(tmp_path: Path, *, rent: float | None = None, name: str = "plan.yaml",
               **top: Any) -> Path:
    """The example plan on a 2 MW tenth of the hall, three-day windows, four sizes."""
    data = yaml.safe_load((EXAMPLE / "plan.yaml").read_text())
    site = yaml.safe_load((EXAMPLE / "site.yaml").read_text())
    data["site"] = str(EXAMPLE / "site.yaml")
    over: dict[str, Any] = {
        "sites": [{**site["sites"][0], "power_cap_kw": 2000}],
        "fleet": [{**g, "count": g["count"] // 10} for g in site["fleet"]],
    }
    if rent is not None:
        over["market"] = {"gpu_usd_per_gpu_hour": {"H100_80GB_SXM5": rent}}
    data["site_overrides"] = over
    data["sizes"] = {"mw": [0, 0.4, 1, 2]}
    data["scenarios"]["window_days"] = 3
    data["scenarios"]["starts"] = ["2024-07-06T06:00:00Z"]
    data["scenarios"]["stresses"] = data["scenarios"]["stresses"][:2]
    data["scenarios"]["bootstrap"] = {"draws": 20, "block_days": 1, "seed": 3}
    data.update(top)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path
