#!/usr/bin/env python3
"""Re-create the small recorded-data extracts bundled in ``orchestrator/data/``.

The extracts feed hashpivot's dry-run / backtest mode and the tests. They are cut
from the full recorded files in the shared data folder (``../shared/data`` next to
the repository root by default); provenance, licences and the exact rules are in
``orchestrator/data/SOURCES.md``. Keep that file in step with any change here.

Usage (from the repository root; standard library only, Python >= 3.11)::

    python scripts/make_data_extracts.py                 # write all extracts
    python scripts/make_data_extracts.py --check         # verify, write nothing
    python scripts/make_data_extracts.py --src /path/to/shared/data --out /tmp/x

``--check`` regenerates every file in memory and exits with status 1 if any
bundled file differs byte-for-byte (use it in CI after touching the rules).
The script warns when a source file's sha256 differs from the one the extracts
were made from. Output is deterministic: same inputs, same bytes.

Outputs (paths relative to ``orchestrator/data/``):

* ``recorded/btc_daily.csv`` -- Coin Metrics daily, 2023-01-01..2025-09-26.
* ``recorded/ercot_hb_west_hourly.csv`` -- ERCOT HB_WEST real-time LMP, hourly,
  hour-ending Central prevailing time converted to UTC hour-beginning.
* ``recorded/gpu_rental_prices.csv`` -- Prime Intellect marketplace median
  USD/GPU-hour, last snapshot in each 4-hour UTC bucket, five GPU models.
* ``recorded/ai_jobs_trace.csv`` -- first ~20k jobs of the Microsoft ITP 2021
  GPU-cluster trace (ElasticFlow), with a deterministic ``interruptible`` flag.
* ``hardware/asic_models.csv`` -- the 50-model SHA-256 ASIC catalog.
* ``hardware/gpu_models.csv`` -- Epoch AI specs for a few NVIDIA GPUs.

Requires the IANA time zone database for ``America/Chicago`` (the system one,
or ``pip install tzdata``).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from zoneinfo import ZoneInfo

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SRC = REPO_ROOT.parent / "shared" / "data"
DEFAULT_OUT = REPO_ROOT / "orchestrator" / "data"

BTC_SRC = "btc/coinmetrics_btc_daily_2009-01-03_2025-09-26.csv"
YAHOO_SRC = "btc/btc_usd_daily_ohlcv_yahoo_2014-09-17_2026-08-21.csv"
ERCOT_SRC = "electricity/ercot_hb_west_rt_lmp_hourly_2023-07-06_2026-07-05.csv"
GPU_SRC_DIR = "gpu/primeintellect_4h"
TRACE_SRC = "traces/microsoft_itp_2021_jobs.csv"
ASIC_SRC = "hardware/asic_miners_catalog_50models.json"
GPU_SPEC_SRC = "hardware/epoch_ml_hardware_gpu_specs.csv"

GPU_MODELS = ("H100_80GB_SXM5", "H100_80GB_PCIe", "A100_80GB_SXM4", "H200_141GB", "B200_180GB")

# sha256 of the source files the bundled extracts were made from.
EXPECTED_SHA256 = {
    BTC_SRC: "396b3293a323e07c0075273fef28587bc8fc6689fb786ef8271d4b441f648559",
    YAHOO_SRC: "992aaca18d507854151153f1669e4894a3111a142152a8a77e8961e1bac52643",
    ERCOT_SRC: "39b32d8903224e336ddee692075a4812ccc70ea2656fcf67f98cfe251311adca",
    f"{GPU_SRC_DIR}/H100_80GB_SXM5.jsonl": (
        "686de28f3765a31a520a20f10dc9a2aa8b0c22d8c1cff04a4241963a5aa2e149"
    ),
    f"{GPU_SRC_DIR}/H100_80GB_PCIe.jsonl": (
        "72d8f7924c760d085cb9b8bd41ef33ff22e455a1fafe61f7e944d849a4958a65"
    ),
    f"{GPU_SRC_DIR}/A100_80GB_SXM4.jsonl": (
        "4db90a6fe682556471346b8648f1532fa8d4baf622e75bc71a004a1926bf782d"
    ),
    f"{GPU_SRC_DIR}/H200_141GB.jsonl": (
        "5a53c82c843230e01cb64c02eeddeb91decd717b256600308282053a55f6561b"
    ),
    f"{GPU_SRC_DIR}/B200_180GB.jsonl": (
        "58688e599b5a56cd7df4627e937eba453a7ec893bb99bf3fb4bacef747d29054"
    ),
    TRACE_SRC: "cb2439ba1d234a8583358e262f007753b2d1749806c9d567d474c31e36f249bf",
    ASIC_SRC: "542d726dbcbe43e4b8f9ee952e2c4a6d7ce03e47a4dccbeda9bb507eab5195cc",
    GPU_SPEC_SRC: "7b11c0d485bde04b772983b7b2e228d510d13b8b670d441736eb9ed798967478",
}

# --- rule parameters (documented in orchestrator/data/SOURCES.md) ---------------------
BTC_FIRST_DAY = "2023-01-01"
BTC_LAST_DAY = "2025-09-26"
PROTOCOL_SUBSIDIES = (6.25, 3.125)  # BTC per block before / after the 2024-04-20 halving
SUBSIDY_SNAP_REL_TOL = 1e-6  # snap the computed ratio to a protocol value within this

ERCOT_TZ = ZoneInfo("America/Chicago")
ERCOT_FIRST_UTC = datetime(2023, 7, 6, tzinfo=UTC)  # interval starts >= this ...
ERCOT_END_UTC = datetime(2025, 12, 1, tzinfo=UTC)  # ... and < this (covers the GPU prices)

YAHOO_FIRST_DAY = "2025-09-01"  # BTC closes after Coin Metrics ends, for the GPU-price weeks
YAHOO_LAST_DAY = "2025-11-30"

GPU_BUCKET = timedelta(hours=4)  # buckets aligned to 00/04/08/12/16/20 UTC

TRACE_MAX_JOBS = 20_000  # plus any jobs tied with the last one's submit time
INTERRUPTIBLE_MAX_DURATION_S = 3600  # duration_s < this -> interruptible

# Epoch "Hardware name" values to keep, in this order (names as spelled upstream).
GPU_SPEC_NAMES = (
    "NVIDIA H100 SXM5 80GB",
    "NVIDIA H100 PCIe",
    "NVIDIA H200 SXM",
    "NVIDIA B200",
    "NVIDIA A100 SXM4 80 GB",
    "NVIDIA A100 PCIe",
    "NVIDIA L40S",  # absent upstream at the pinned commit; skipped with a note
    "NVIDIA GeForce RTX 4090",
)

Row = Sequence[object]


def _csv_bytes(header: Sequence[str], rows: Iterable[Row]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8")


def _iso_z(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- 1. BTC daily ----------------------------------------------------------------------


def _subsidy_text(ratio: float) -> str:
    for value in PROTOCOL_SUBSIDIES:
        if abs(ratio / value - 1.0) <= SUBSIDY_SNAP_REL_TOL:
            return repr(value)
    return f"{ratio:.6f}"


def make_btc_daily(src: Path) -> tuple[bytes, list[str]]:
    notes: list[str] = []
    out = []
    with (src / BTC_SRC).open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            day = row["date"][:10]
            if not BTC_FIRST_DAY <= day <= BTC_LAST_DAY:
                continue
            price = float(row["PriceUSD"])
            blocks = int(row["BlkCnt"])
            fees = float(row["FeeTotUSD"]) / price / blocks
            subsidy = _subsidy_text(float(row["IssTotUSD"]) / price / blocks)
            if subsidy not in ("6.25", "3.125"):
                notes.append(f"btc {day}: subsidy ratio {subsidy} is not a protocol value; kept")
            out.append((day, row["PriceUSD"], row["DiffMean"], blocks, f"{fees:.8f}", subsidy))
    out.sort()
    header = (
        "date",
        "price_usd",
        "difficulty",
        "block_count",
        "fees_btc_per_block",
        "subsidy_btc_per_block",
    )
    return _csv_bytes(header, out), notes


def make_btc_yahoo(src: Path) -> tuple[bytes, list[str]]:
    out = []
    with (src / YAHOO_SRC).open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            if YAHOO_FIRST_DAY <= row["Date"] <= YAHOO_LAST_DAY:
                out.append((row["Date"], row["Close"]))
    out.sort()
    return _csv_bytes(("date", "close_usd"), out), []


# --- 2. ERCOT HB_WEST hourly -----------------------------------------------------------


def _utc_starts(hour_ending_local: datetime) -> list[datetime]:
    """UTC interval starts covered by one hour-ending local prevailing-time stamp.

    HE HH:00 covers local HH-1:00..HH:00. If that start is ambiguous (the repeated
    hour on the DST-end day, which upstream merged into one row), the row covers
    both UTC hours. A non-existent start (the DST-start gap) yields nothing; the
    source has no such stamps.
    """
    start = hour_ending_local - timedelta(hours=1)
    starts = []
    for fold in (0, 1):
        aware = start.replace(tzinfo=ERCOT_TZ, fold=fold)
        # round-trip to drop wall times that do not exist
        back = aware.astimezone(UTC).astimezone(ERCOT_TZ)
        if back.replace(tzinfo=None) == start:
            starts.append(aware.astimezone(UTC))
    return sorted(set(starts))


def make_ercot(src: Path) -> tuple[bytes, list[str]]:
    notes: list[str] = []
    out: dict[datetime, str] = {}
    with (src / ERCOT_SRC).open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            stamp = datetime.strptime(row["HOUR"], "%Y-%m-%d %H:%M:%S")
            starts = _utc_starts(stamp)
            in_range = [s for s in starts if ERCOT_FIRST_UTC <= s < ERCOT_END_UTC]
            if not in_range:
                continue
            if len(starts) != 1:
                notes.append(
                    f"ercot {row['HOUR']} local HE (merged repeated hour) -> "
                    + ", ".join(_iso_z(s) for s in starts)
                )
            value = row["HUB"].strip()
            float(value)  # must parse
            for start in in_range:
                if start in out:
                    raise ValueError(f"duplicate UTC hour {start} from {row['HOUR']}")
                out[start] = value
    times = sorted(out)
    gaps = [(a, b) for a, b in pairwise(times) if b - a != timedelta(hours=1)]
    for a, b in gaps:
        notes.append(f"ercot gap: {_iso_z(a)} -> {_iso_z(b)}")
    rows = [(_iso_z(t), out[t]) for t in times]
    return _csv_bytes(("time", "usd_per_mwh"), rows), notes


# --- 3. GPU rental prices --------------------------------------------------------------


def make_gpu_prices(src: Path) -> tuple[bytes, list[str]]:
    notes: list[str] = []
    rows: list[tuple[str, str, str]] = []
    for model in GPU_MODELS:
        last_in_bucket: dict[int, tuple[datetime, float]] = {}
        with (src / GPU_SRC_DIR / f"{model}.jsonl").open(encoding="utf-8") as handle:
            for line in handle:
                if not line.strip():
                    continue
                snap = json.loads(line)
                moment = datetime.fromisoformat(snap["timestamp"]).astimezone(UTC)
                median = snap["price_stats"]["median"]
                if median is None:
                    continue
                bucket = int(moment.timestamp() // GPU_BUCKET.total_seconds())
                kept = last_in_bucket.get(bucket)
                if kept is None or moment >= kept[0]:
                    last_in_bucket[bucket] = (moment, float(median))
        buckets = sorted(last_in_bucket)
        missing = sum(b - a - 1 for a, b in pairwise(buckets))
        if missing:
            notes.append(f"gpu {model}: {missing} empty 4h bucket(s) between first and last")
        for bucket in buckets:
            moment, median = last_in_bucket[bucket]
            # keep the snapshot's own time (whole seconds): no look-ahead in replay
            rows.append((_iso_z(moment.replace(microsecond=0)), model, repr(median)))
    rows.sort()
    return _csv_bytes(("time", "gpu_model", "usd_per_gpu_hour"), rows), notes


# --- 4. AI jobs trace ------------------------------------------------------------------


def make_jobs_trace(src: Path) -> tuple[bytes, list[str]]:
    notes: list[str] = []
    jobs: list[tuple[int, int, int]] = []
    dropped = 0
    with (src / TRACE_SRC).open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            submit, gpus, duration = (
                int(row["submit_time_s"]),
                int(row["num_gpu"]),
                int(row["duration_s"]),
            )
            if duration <= 0 or gpus < 1:
                dropped += 1
                continue
            jobs.append((submit, gpus, duration))
    jobs.sort(key=lambda job: job[0])  # stable: keeps upstream order within a second
    cut_time = jobs[TRACE_MAX_JOBS - 1][0]
    kept = [job for job in jobs if job[0] <= cut_time]
    notes.append(f"trace: {dropped} job(s) dropped (duration <= 0 or gpus < 1)")
    notes.append(f"trace: kept {len(kept)} of {len(jobs)} jobs (submit <= {cut_time} s)")
    t0 = kept[0][0]
    rows = sorted((s - t0, g, d, 1 if d < INTERRUPTIBLE_MAX_DURATION_S else 0) for s, g, d in kept)
    header = ("submit_offset_s", "gpus", "duration_s", "interruptible")
    return _csv_bytes(header, rows), notes


# --- 5. ASIC catalog -------------------------------------------------------------------


def make_asic_models(src: Path) -> tuple[bytes, list[str]]:
    with (src / ASIC_SRC).open(encoding="utf-8") as handle:
        models = json.load(handle)
    cols = (
        "id",
        "name",
        "manufacturer",
        "hash_rate_ths",
        "power_watts",
        "efficiency_jth",
        "release_year",
    )
    rows = sorted(tuple(str(m[c]) for c in cols) for m in models)
    if len({r[0] for r in rows}) != len(rows):
        raise ValueError("duplicate ASIC id")
    return _csv_bytes(cols, rows), []


# --- 6. GPU specs ----------------------------------------------------------------------


def _num_text(value: str) -> str:
    number = float(value)
    return str(int(number)) if number.is_integer() else repr(number)


def make_gpu_models(src: Path) -> tuple[bytes, list[str]]:
    notes: list[str] = []
    with (src / GPU_SPEC_SRC).open(encoding="utf-8", newline="") as handle:
        by_name = {row["Hardware name"].strip(): row for row in csv.DictReader(handle)}
    rows = []
    for name in GPU_SPEC_NAMES:
        row = by_name.get(name)
        if row is None:
            notes.append(f"gpu spec: {name!r} not in the Epoch file; skipped")
            continue
        memory_gb = _num_text(str(float(row["Memory (bytes)"]) / 1e9))
        date.fromisoformat(row["Release date"])  # must parse
        rows.append(
            (name, row["Manufacturer"], _num_text(row["TDP (W)"]), memory_gb, row["Release date"])
        )
    header = ("name", "manufacturer", "tdp_w", "memory_gb", "release_date")
    return _csv_bytes(header, rows), notes


OUTPUTS = {
    "recorded/btc_daily.csv": make_btc_daily,
    "recorded/btc_usd_yahoo_daily.csv": make_btc_yahoo,
    "recorded/ercot_hb_west_hourly.csv": make_ercot,
    "recorded/gpu_rental_prices.csv": make_gpu_prices,
    "recorded/ai_jobs_trace.csv": make_jobs_trace,
    "hardware/asic_models.csv": make_asic_models,
    "hardware/gpu_models.csv": make_gpu_models,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=DEFAULT_SRC, help="shared data folder")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="orchestrator/data folder")
    parser.add_argument("--check", action="store_true", help="compare only, write nothing")
    args = parser.parse_args(argv)

    for rel, expected in EXPECTED_SHA256.items():
        path = args.src / rel
        if not path.exists():
            print(f"error: missing source {path}", file=sys.stderr)
            return 2
        if _sha256(path) != expected:
            print(f"warning: {rel} differs from the pinned source (sha256)", file=sys.stderr)

    status = 0
    for rel, make in OUTPUTS.items():
        content, notes = make(args.src)
        target = args.out / rel
        lines = content.count(b"\n") - 1
        for note in notes:
            print(f"  note: {note}")
        if args.check:
            same = target.exists() and target.read_bytes() == content
            print(f"{'ok  ' if same else 'DIFF'} {rel} ({lines} rows)")
            status |= 0 if same else 1
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
            print(f"wrote {rel}: {lines} rows, {len(content):,} bytes")
    return status


if __name__ == "__main__":
    sys.exit(main())
