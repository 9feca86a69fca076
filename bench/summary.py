"""The figures each benchmark records against its target, printed together by `python -m bench`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Figure:
    benchmark: str
    figure: str
    target: str
    #: True / False when the figure is checked against a target, None when only reported.
    met: bool | None


FIGURES: list[Figure] = []


def record(benchmark: str, figure: str, target: str = "reported", met: bool | None = None) -> None:
    FIGURES.append(Figure(benchmark, figure, target, met))


def print_table() -> None:
    if not FIGURES:
        return
    verdict = {True: "met", False: "NOT MET", None: ""}
    rows = [(f.benchmark, f.figure, f.target, verdict[f.met]) for f in FIGURES]
    widths = [max(len(r[i]) for r in [("benchmark", "figure", "target", ""), *rows])
              for i in range(4)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    print("\n" + line.format("benchmark", "figure", "target", ""))
    print("-" * (sum(widths) + 6))
    for row in rows:
        print(line.format(*row))
