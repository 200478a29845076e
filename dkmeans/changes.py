"""What changed since the last run: archetype sizes, shares, centre moves, new and
vanished archetypes, ranks, and the label churn.

A retrain aligned to the previous model (:func:`dkmeans.align_labels`) keeps cluster
IDs, so the same ID names the same archetype in both runs and the two profiles compare
row by row.  :func:`compare_archetypes` does the comparison; the label churn is counted
in the final labels pass (:func:`dkmeans.label_and_profile` with ``previous_labels``),
never by reading the records again.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ._engine.errors import InputError, InputTypeError
from .alignment import centers_in_feature_space, split_model
from .archetypes import Archetypes, replace_csv

__all__ = ["ArchetypeChanges", "LabelChurn", "compare_archetypes"]

_MISSING = "n/a"
NOTABLE_SD = 0.1  # centre moves the short form lists (reference standard deviations)


@dataclass(frozen=True, eq=False)
class LabelChurn:
    """How the records' archetype IDs changed from their previous labels.

    Counted in the final labels pass (see :func:`dkmeans.label_and_profile`); record
    counts, not sample weights.

    Attributes
    ----------
    n_records : int
    n_changed : int
        Records labelled before whose archetype ID differs now.
    n_unlabelled_before : int
        Records the previous labels left unlabelled (negative: the ``-1`` fill of a
        labels array); not counted in ``n_changed``.
    transitions : pandas.DataFrame
        Records per (previous ID, new ID): previous IDs as rows (those that label no
        record left out), this run's cluster IDs as columns.  Its diagonal (where the
        IDs match) holds the records that kept their archetype.
    """

    n_records: int
    n_changed: int
    n_unlabelled_before: int
    transitions: object

    @property
    def rate(self) -> float:
        """The share of the previously labelled records whose archetype changed (NaN
        when none was labelled)."""
        labelled = self.n_records - self.n_unlabelled_before
        return self.n_changed / labelled if labelled else float("nan")

    def flows(self, top: int | None = None):
        """The changes as ``(previous, now, records, share)`` rows, the largest first;
        ``share`` is of all records.

        Returns
        -------
        pandas.DataFrame
        """
        import pandas as pd

        t = self.transitions
        rows = [(int(p), int(c), int(t.at[p, c])) for p in t.index for c in t.columns
                if p != c and t.at[p, c] > 0]  # fmt: skip
        df = pd.DataFrame(rows, columns=["previous", "now", "records"])
        df["share"] = df["records"] / max(self.n_records, 1)
        df = df.sort_values(["records", "previous", "now"], ascending=[False, True, True])
        return df.reset_index(drop=True).head(top) if top else df.reset_index(drop=True)

    def per_archetype(self, ids):
        """Per cluster ID: records that kept it, left it and joined it.

        Returns
        -------
        pandas.DataFrame with columns ``records_kept``, ``records_left``, ``records_joined``
        """
        import pandas as pd

        t = self.transitions.reindex(index=ids, columns=ids, fill_value=0)
        kept = pd.Series(np.diag(t.to_numpy()), index=t.index)
        out = self.transitions.sum(axis=1).reindex(ids, fill_value=0) - kept
        into = self.transitions.sum(axis=0).reindex(ids, fill_value=0) - kept
        return pd.DataFrame({"records_kept": kept, "records_left": out, "records_joined": into})

    def describe(self) -> str:
        """One line: the churn rate and its counts."""
        labelled = self.n_records - self.n_unlabelled_before
        text = (f"label churn {_pct(self.rate, 2)}: {self.n_changed:,} of {labelled:,} "
                "records changed archetype")  # fmt: skip
        if self.n_unlabelled_before:
            text += f" ({self.n_unlabelled_before:,} were unlabelled before)"
        return text


@dataclass(frozen=True, eq=False)
class ArchetypeChanges:
    """This run's archetypes against the reference run's (see :func:`compare_archetypes`).

    Attributes
    ----------
    table : pandas.DataFrame
        One row per cluster ID of either run, ascending: ``status`` (``kept``,
        ``new``: no match in the reference, ``vanished``: in the reference only),
        ``size_then``, ``size_now``, ``share_then``, ``share_now``, ``rank_then``,
        ``rank_now``, ``rank_change`` (``rank_now - rank_then``: negative moved up),
        ``distance_sd`` (the centre's move as a Euclidean distance in reference
        standard deviations), ``largest_move`` (the feature that moved most, in
        standard deviations) and, with the churn, ``records_kept``,
        ``records_left`` and ``records_joined``.  A new archetype's ``size_then`` and
        a vanished one's ``size_now`` are 0; what cannot be compared is NaN.
    shift : pandas.DataFrame of shape (n_ids, n_features)
        Centre now minus centre then, in the features' own units (NaN for new and
        vanished archetypes).
    shift_sd : pandas.DataFrame of shape (n_ids, n_features)
        ``shift`` in reference standard deviations (see ``std_source``).
    churn : LabelChurn or None
        The records' label changes; None without previous labels.
    std_source : str or None
        Which standard deviations ``shift_sd`` divides by: the reference profile's
        global per-feature standard deviation, else the reference's StandardScaler
        ``scale_`` (the same statistic: the population standard deviation of each
        feature over the training records); None when the reference has neither.
    notes : tuple of str
        What could not be compared, and why.
    """

    table: object
    shift: object
    shift_sd: object
    churn: LabelChurn | None = None
    std_source: str | None = None
    notes: tuple = field(default_factory=tuple)

    @property
    def new(self) -> list[int]:
        """IDs of the archetypes with no match in the reference."""
        return self._ids("new")

    @property
    def vanished(self) -> list[int]:
        """IDs of the reference's archetypes not present now."""
        return self._ids("vanished")

    @property
    def kept(self) -> list[int]:
        """IDs present in both runs."""
        return self._ids("kept")

    @property
    def churn_rate(self) -> float:
        """The share of records whose archetype changed (NaN without previous labels)."""
        return float("nan") if self.churn is None else self.churn.rate

    def _ids(self, status: str) -> list[int]:
        return [int(c) for c in self.table.index[self.table["status"] == status]]

    def _listed(self, status: str, share: str) -> str:
        """``5 (11.9% of records)``, or none."""
        ids = self._ids(status)
        shares = self.table[share]
        return ", ".join(f"{i} ({_pct(shares[i])} of records)" for i in ids) if ids else "none"

    def largest_moves(self, top: int = 3):
        """The kept archetypes whose centres moved most (by ``distance_sd``).

        Returns
        -------
        pandas.DataFrame : rows of ``table``, the largest move first.
        """
        kept = self.table[self.table["status"] == "kept"]
        return kept.sort_values("distance_sd", ascending=False, kind="stable").head(top)

    def short(self, top: int = 3) -> str:
        """A few lines for a console: churn, new and vanished IDs, the largest centre
        moves and the rank changes."""
        lines = ["changes since the reference run"]
        lines.append("  " + (self.churn.describe() if self.churn is not None
                             else "label churn: not measured (no previous labels)"))  # fmt: skip
        lines.append(f"  new: {self._listed('new', 'share_now')}   "
                     f"vanished: {self._listed('vanished', 'share_then')}")  # fmt: skip
        moves = [f"{c} {row['largest_move']} (distance {row['distance_sd']:.2f}sd)"
                 for c, row in self.largest_moves(top).iterrows()
                 if row["distance_sd"] >= NOTABLE_SD]  # fmt: skip
        if moves:
            lines.append("  largest centre moves: " + "; ".join(moves))
        elif self.kept and self.table["distance_sd"].notna().any():
            lines.append(f"  no centre moved {NOTABLE_SD}sd or more")
        ranks = [f"{c}: {_num(r['rank_then'])} -> {_num(r['rank_now'])}"
                 for c, r in self.table.iterrows()
                 if r["rank_then"] != r["rank_now"]]  # fmt: skip
        if ranks and self.table["rank_then"].notna().any():
            lines.append("  rank changes: " + ", ".join(ranks))
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def to_markdown(self, digits: int = 3) -> str:
        """The report as Markdown: a summary, the per-archetype table, the centre moves
        (in standard deviations and in units) and where the changed records went."""
        out = ["# What changed since the last run", ""]
        out.append("- " + (self.churn.describe() if self.churn is not None
                           else "label churn: not measured (no previous labels)"))  # fmt: skip
        out.append(f"- new archetypes: {self._listed('new', 'share_now')}")
        out.append(f"- vanished archetypes: {self._listed('vanished', 'share_then')}")
        if self.std_source is not None:
            out.append(f"- standard deviations: {self.std_source}")
        out += [f"- note: {n}" for n in self.notes]
        out += ["", "## Archetypes", "", _markdown(self.table, digits)]
        out += ["## Centre moves (reference standard deviations)", "",
                _markdown(self.shift_sd, digits)]  # fmt: skip
        out += ["## Centre moves (feature units)", "", _markdown(self.shift, digits)]
        if self.churn is not None:
            flows = self.churn.flows()
            out += ["## Where the changed records went", ""]
            out.append(_markdown(flows, digits, index=False) if len(flows) else "none\n")
        return "\n".join(out)

    def to_csv(self, path: str | os.PathLike) -> None:
        """Write ``table`` with every feature's ``<feature>_shift`` and
        ``<feature>_shift_sd`` as CSV (written to a temporary name, then moved into
        place)."""
        wide = self.table.join(self.shift.add_suffix("_shift"))
        replace_csv(wide.join(self.shift_sd.add_suffix("_shift_sd")), path)


def compare_archetypes(current: Archetypes, reference, *, model=None,
                       churn: LabelChurn | None = None,
                       notes: Sequence[str] = ()) -> ArchetypeChanges:  # fmt: skip
    """Compare this run's archetypes with the reference run's, ID by ID.

    Parameters
    ----------
    current : Archetypes
        This run's profile (``JobResult.archetypes``, ``LabelPass.archetypes``), its
        clusters carrying the reference's IDs (:func:`dkmeans.align_labels`).
    reference : Archetypes, or fitted KMeans or Pipeline ending in one
        The reference run's profile, or its model: a model saved by the job carries
        its profile in ``metadata_["archetypes"]`` (:meth:`Archetypes.to_dict`).  A
        model without one (saved by an older dkmeans, or fitted by hand) gives its
        centres (undoing scaling and PCA), its ``cluster_sizes_`` if it has them,
        no ranks, and its StandardScaler's ``scale_`` as the standard deviations;
        ``notes`` says what could not be compared.
    model : fitted KMeans or Pipeline ending in one, optional
        This run's model.  Only for a reference without a profile: then both runs'
        centres are model centres in feature units (like with like); without it,
        ``current.means`` stand in.
    churn : LabelChurn, optional
        ``LabelPass.churn`` of the final pass.
    notes : sequence of str, optional
        Extra lines for the report (e.g. why no churn was measured).

    Returns
    -------
    ArchetypeChanges

    Raises
    ------
    InputError
        If the two runs profile different features.
    InputTypeError
        If ``reference`` is neither an Archetypes nor a fitted model.

    Examples
    --------
    >>> import numpy as np
    >>> from dkmeans import profile_clusters
    >>> from dkmeans.changes import compare_archetypes
    >>> X = np.array([[0.0], [1.0], [10.0], [11.0]])
    >>> then = profile_clusters(X, [0, 0, 1, 1], feature_names=["x"])
    >>> now = profile_clusters(X + [[0.0], [0.0], [2.0], [2.0]], [0, 0, 1, 1],
    ...                        feature_names=["x"])
    >>> compare_archetypes(now, then).shift["x"].tolist()
    [0.0, 2.0]
    """
    if not isinstance(current, Archetypes):
        raise InputTypeError(
            f"current is a {type(current).__name__}; pass this run's Archetypes "
            "(JobResult.archetypes)."
        )
    notes = list(notes)
    then = _reference_side(reference, list(current.means.columns), notes)
    now_centres = current.means
    if then.from_model and model is not None:
        now_centres = _model_centres(model, list(current.means.columns))
    elif then.from_model:
        notes.append("this run's cluster means are compared with the reference's model "
                     "centres (pass model= to compare model centres)")  # fmt: skip
    ids = sorted(set(now_centres.index) | set(then.centres.index))
    table = _status_table(ids, then, current)
    shift = now_centres.reindex(ids) - then.centres.reindex(ids)
    shift.index.name = "cluster"
    if then.std is None:
        shift_sd = shift * np.nan
        notes.append("the reference has no per-feature standard deviations: centre moves "
                     "are in units only")  # fmt: skip
    else:
        std = then.std.reindex(shift.columns)
        shift_sd = shift / std.where(std > 0)
    table["distance_sd"] = np.sqrt((shift_sd**2).sum(axis=1, min_count=1))
    table["largest_move"] = [_largest(shift_sd.loc[c], shift.loc[c]) for c in ids]
    if churn is not None:
        table = table.join(churn.per_archetype(ids))
    return ArchetypeChanges(table, shift, shift_sd, churn, then.std_source, tuple(notes))


# --------------------------------------------------------------------------- helpers


@dataclass
class _Side:
    """One run's centres (ID x feature, in units), sizes, ranks and standard deviations."""

    centres: object
    sizes: object | None
    rank: object | None
    std: object | None
    std_source: str | None
    from_model: bool = False


def _from_profile(arch: Archetypes) -> _Side:
    return _Side(arch.means, arch.sizes, arch.table["rank"], arch.global_std,
                 "the reference profile's global standard deviation of each feature")  # fmt: skip


def _reference_side(reference, features: list[str], notes: list[str]) -> _Side:
    if isinstance(reference, Archetypes):
        side = _from_profile(reference)
    else:
        try:
            _, km = split_model(reference)
        except InputTypeError:
            raise InputTypeError(
                f"reference is a {type(reference).__name__}; pass the reference run's "
                "Archetypes or its fitted model (dkmeans.load)."
            ) from None
        doc = getattr(km, "metadata_", {}).get("archetypes")
        if doc:
            side = _from_profile(Archetypes.from_dict(doc))
        else:
            side = _model_side(reference, features, notes)
    if list(side.centres.columns) != features:
        raise InputError(
            f"The reference profiles features {list(side.centres.columns)} and this run "
            f"{features}; compare runs on the same features."
        )
    return side


def _model_centres(model, features: list[str]):
    """A model's centres in feature units, as an ID x feature DataFrame."""
    import pandas as pd

    _, km = split_model(model)
    centres = centers_in_feature_space(model)
    if centres.shape[1] != len(features):
        raise InputError(
            f"The model has {centres.shape[1]} features and the profile {len(features)}; "
            "compare runs on the same features."
        )
    ids = np.asarray(getattr(km, "cluster_ids_", np.arange(centres.shape[0])))
    return pd.DataFrame(centres, index=pd.Index(ids, name="cluster"), columns=features)


def _model_side(reference, features: list[str], notes: list[str]) -> _Side:
    """What a reference model without a saved profile still tells."""
    import pandas as pd

    before, km = split_model(reference)
    centres = _model_centres(reference, features)
    notes.append("the reference model carries no archetype profile (saved by an older "
                 "dkmeans): ranks were not compared")  # fmt: skip
    sizes = getattr(km, "cluster_sizes_", None)
    if sizes is None:
        notes.append("the reference model has no cluster sizes: sizes then are unknown")
    else:
        sizes = pd.Series(np.asarray(sizes, dtype=np.float64), index=centres.index)
    scale = getattr(before[0], "scale_", None) if before else None
    std = None if scale is None else pd.Series(np.asarray(scale, np.float64), index=features)
    source = None if std is None else "the reference's StandardScaler scale_"
    return _Side(centres, sizes, None, std, source, from_model=True)


def _status_table(ids, then: _Side, current: Archetypes):
    import pandas as pd

    index = pd.Index(ids, name="cluster")
    in_then, in_now = index.isin(then.centres.index), index.isin(current.means.index)
    status = np.where(in_then & in_now, "kept", np.where(in_now, "new", "vanished"))
    nan = pd.Series(np.nan, index=index)
    size_then = nan if then.sizes is None else then.sizes.reindex(index, fill_value=0.0)
    size_now = current.sizes.reindex(index, fill_value=0.0)
    rank_then = nan if then.rank is None else then.rank.reindex(index).astype(np.float64)
    rank_now = current.table["rank"].reindex(index).astype(np.float64)
    return pd.DataFrame({
        "status": status,
        "size_then": size_then.astype(np.float64), "size_now": size_now.astype(np.float64),
        "share_then": size_then / size_then.sum(), "share_now": size_now / size_now.sum(),
        "rank_then": rank_then, "rank_now": rank_now, "rank_change": rank_now - rank_then,
    }, index=index)  # fmt: skip


def _largest(sd_row, unit_row) -> str:
    """``feature +1.2sd (+3.4)``: the feature that moved most (in sd, else in units)."""
    row = sd_row if sd_row.notna().any() else unit_row
    if not row.notna().any():
        return ""
    feature = row.abs().idxmax()
    units = f"{unit_row[feature]:+.3g}"
    if row is unit_row:
        return f"{feature} {units}"
    return f"{feature} {sd_row[feature]:+.2f}sd ({units})"


def _pct(x: float, digits: int = 1) -> str:
    return _MISSING if not np.isfinite(x) else f"{100 * x:.{digits}f}%"


def _num(x) -> str:
    return _MISSING if not np.isfinite(x) else f"{x:.0f}"


def _cell(value, digits: int) -> str:
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, float | np.floating):
        if not np.isfinite(value):
            return _MISSING
        if float(value).is_integer() and abs(value) < 1e15:
            return f"{value:,.0f}"
        return f"{value:.{digits}g}"
    return str(value).replace("|", "\\|")


def _markdown(df, digits: int, *, index: bool = True) -> str:
    t = df.reset_index() if index else df
    header = [str(c) for c in t.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v, digits) for v in row) + " |"
              for row in t.itertuples(index=False)]  # fmt: skip
    return "\n".join(lines) + "\n"
