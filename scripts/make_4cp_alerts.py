"""Write the illustrative 4CP alert series bundled with hashpivot.

An illustration, not ERCOT's published 4CP intervals: for each summer month (June to
September) of the bundled ERCOT HB_WEST hourly prices, the weekday afternoon hour
(14:00-18:59 America/Chicago) with the highest real-time price is marked as that month's
peak interval. The output is a step series: `alert` is 1 from the start of each marked
hour and 0 again from its end, so the file stays a few hundred bytes.

    python scripts/make_4cp_alerts.py

writes orchestrator/data/recorded/ercot_4cp_alerts_illustrative.csv.
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
PRICES = ROOT / "orchestrator/data/recorded/ercot_hb_west_hourly.csv"
OUT = ROOT / "orchestrator/data/recorded/ercot_4cp_alerts_illustrative.csv"
ZONE = ZoneInfo("America/Chicago")
SEASON = (6, 7, 8, 9)
AFTERNOON = range(14, 19)


def peak_hours(rows: list[tuple[datetime, float]]) -> list[datetime]:
    """The highest-price weekday afternoon hour of each summer month (UTC start)."""
    best: dict[tuple[int, int], tuple[float, datetime]] = {}
    for start, price in rows:
        local = start.astimezone(ZONE)
        if local.month not in SEASON or local.weekday() >= 5 or local.hour not in AFTERNOON:
            continue
        key = (local.year, local.month)
        if key not in best or price > best[key][0]:
            best[key] = (price, start)
    return sorted(start for _, start in best.values())


def alert_rows(prices: Path = PRICES) -> list[tuple[str, int]]:
    """The series' rows: (UTC time, alert)."""
    with prices.open() as f:
        rows = [
            (datetime.fromisoformat(r["time"].replace("Z", "+00:00")), float(r["usd_per_mwh"]))
            for r in csv.DictReader(f)
            if r["usd_per_mwh"]
        ]

    def stamp(t: datetime) -> str:
        return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    out = [(stamp(min(t for t, _ in rows)), 0)]
    for start in peak_hours(rows):
        out += [(stamp(start), 1), (stamp(start + timedelta(hours=1)), 0)]
    return out


def main() -> None:
    with OUT.open("w", newline="") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(["time", "alert"])
        out.writerows(alert_rows())
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
