"""The soak benchmark's memory verdict: a saw-tooth is flat, growth that goes on is growing."""

from __future__ import annotations

from loadgen.bench.soak import _trend


def _series(level: float, per_minute: float, tooth: float = 25.0, minutes: float = 10.0) -> list[tuple[float, float]]:
    points = []
    for i in range(int(minutes * 12)):  # every 5 s
        t = i * 5.0
        points.append((t, level + per_minute * t / 60 + (tooth if i % 7 == 3 else 0.0) - (i % 4)))
    return points


def test_a_saw_tooth_around_a_level_is_flat_and_steady_growth_is_growing() -> None:
    assert _trend(_series(310.0, 0.0), 0.5)["trend"] == "flat"
    assert _trend(_series(310.0, 3.0), 0.5)["trend"] == "growing"
    assert _trend(_series(310.0, -3.0), 0.5)["trend"] == "falling"
    assert _trend(_series(310.0, 0.2), 0.5)["trend"] == "flat"  # within the tolerance


def test_growth_that_stopped_before_the_last_third_is_not_growing() -> None:
    rising_then_level = [(t, min(v, 330.0)) for t, v in _series(300.0, 6.0)]
    assert _trend(rising_then_level, 0.5)["trend"] == "flat"
