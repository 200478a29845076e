"""How sure a choice of k is: the elbow (Kneedle), and the confidence rule.

Pure functions on small host values (the k table's columns, a few ints and floats):
no data, no dask.  Low in the engine's layers so that ``model_io`` can rebuild a
saved :class:`KConfidence`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

__all__ = ["STABILITY_THRESHOLD", "KConfidence", "assess", "kneedle"]

# Below this adjusted Rand index between the chosen k's fits on two halves of the
# sample, the clustering itself is not reproducible and the choice is called low.
STABILITY_THRESHOLD = 0.8


def kneedle(x, y) -> int | None:
    """The knee of a decreasing convex curve (inertia against k), by Kneedle.

    Satopää et al. (2011): normalise ``x`` and ``y`` to [0, 1]; for a decreasing
    convex curve the difference curve is ``(1 - y_n) - x_n``, the height of the
    flipped curve above the diagonal, and the knee is where it is largest (the
    point farthest below the chord from the first point to the last).  Ties go to
    the smallest ``x``.  Points whose ``y`` is NaN are left out.

    Parameters
    ----------
    x : array-like of shape (n,)
        Increasing (the ks).
    y : array-like of shape (n,)

    Returns
    -------
    int or None
        The ``x`` of the knee; None with fewer than three finite points or a flat
        curve (no knee to find).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    finite = np.isfinite(y)
    x, y = x[finite], y[finite]
    if x.shape[0] < 3 or y.max() == y.min():
        return None
    xn = (x - x[0]) / (x[-1] - x[0])
    yn = (y - y.min()) / (y.max() - y.min())
    return int(x[int(np.argmax((1.0 - yn) - xn))])


@dataclass(frozen=True)
class KConfidence:
    """How confident the choice of k is (:attr:`KSelection.confidence`).

    ``level`` is ``"low"`` when any of these holds, else ``"high"``:

    1. the elbow (Kneedle on inertia) prefers another k than the chosen one;
    2. more than half of the other criteria prefer another k than the chosen one
       (the criteria other than the one that chose, the elbow included);
    3. ``stability`` is below :data:`STABILITY_THRESHOLD` (0.8).

    A criterion that cannot say (the elbow of fewer than three ks, a column of NaN)
    is left out of ``preferred`` and of the rule; a NaN stability (a sample too small
    to halve) is reported but does not lower the level.

    Attributes
    ----------
    level : {"high", "low"}
    k : int
        The chosen k.
    criterion : str
        The criterion that chose it.
    preferred : dict of str to int
        The k each criterion prefers.
    stability : float
        Adjusted Rand index between the chosen k's fits on two disjoint halves of the
        sample, both labelling the whole sample (1: the same partition); NaN when not
        measured.
    reasons : tuple of str
        Why the level is low (empty when high).
    candidates : tuple of int
        The distinct ks the criteria prefer, ascending.
    warning : str or None
        One line naming the candidates, when the level is low.
    """

    level: str
    k: int
    criterion: str
    preferred: Mapping[str, int] = field(default_factory=dict)
    stability: float = math.nan
    reasons: tuple[str, ...] = ()
    candidates: tuple[int, ...] = ()
    warning: str | None = None

    @property
    def low(self) -> bool:
        return self.level == "low"

    def summary(self) -> str:
        """One line: the level, who prefers what when it is low, and the stability."""
        text = f"k confidence: {self.level}"
        if self.low:
            text += f" — {_who_prefers(self.preferred, self.k)}"
        return f"{text}; stability {_fmt(self.stability)}"

    def to_dict(self) -> dict:
        """JSON-serialisable (NaN stability as None)."""
        return {
            "level": self.level,
            "k": self.k,
            "criterion": self.criterion,
            "preferred": dict(self.preferred),
            "stability": None if math.isnan(self.stability) else self.stability,
            "reasons": list(self.reasons),
            "candidates": list(self.candidates),
            "warning": self.warning,
        }

    @classmethod
    def from_dict(cls, doc: Mapping) -> KConfidence:
        """The inverse of :meth:`to_dict`."""
        stability = doc.get("stability")
        return cls(
            level=doc["level"], k=int(doc["k"]), criterion=doc["criterion"],
            preferred={str(c): int(k) for c, k in doc.get("preferred", {}).items()},
            stability=math.nan if stability is None else float(stability),
            reasons=tuple(doc.get("reasons", ())),
            candidates=tuple(int(k) for k in doc.get("candidates", ())),
            warning=doc.get("warning"),
        )  # fmt: skip


def assess(k: int, criterion: str, preferred: Mapping[str, int], stability: float,
           threshold: float = STABILITY_THRESHOLD) -> KConfidence:  # fmt: skip
    """The :class:`KConfidence` of choosing ``k`` by ``criterion`` (the rule is in its
    docstring)."""
    reasons = []
    elbow = preferred.get("elbow")
    if criterion != "elbow" and elbow is not None and elbow != k:
        reasons.append(f"the elbow prefers {elbow}, not {k}")
    others = [c for c in preferred if c != criterion]
    against = [c for c in others if preferred[c] != k]
    if 2 * len(against) > len(others):
        reasons.append(f"{len(against)} of the {len(others)} other criteria prefer another k")
    if stability < threshold:  # False for NaN
        reasons.append(f"stability {_fmt(stability)} is below {threshold}")
    candidates = tuple(sorted(set(preferred.values())))
    warning = None
    if reasons:
        warning = (
            f"k choice is uncertain: {_who_prefers(preferred, k)}; stability (ARI between "
            f"fits on two halves of the sample) {_fmt(stability)}"
        )
    return KConfidence("low" if reasons else "high", int(k), criterion, dict(preferred),
                       float(stability), tuple(reasons), candidates, warning)  # fmt: skip


def _who_prefers(preferred: Mapping[str, int], k: int) -> str:
    """``"silhouette prefers 5, elbow and calinski_harabasz prefer 6"``: the chosen k's
    criteria first, then the other ks in ascending order."""
    groups: dict[int, list[str]] = {}
    for name, kk in preferred.items():
        groups.setdefault(kk, []).append(name)
    order = sorted(groups, key=lambda kk: (kk != k, kk))
    parts = []
    for kk in order:
        names = groups[kk]
        who = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        parts.append(f"{who} {'prefers' if len(names) == 1 else 'prefer'} {kk}")
    return ", ".join(parts)


def _fmt(value: float) -> str:
    return "not measured" if math.isnan(value) else f"{value:.2f}"
