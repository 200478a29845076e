"""The ``dkmeans`` command line.  The CLI prints; the library logs."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import time
from pathlib import Path

import yaml
import zarr

from .._engine.errors import DKMeansError
from .._engine.validation import unwrap
from ..model_selection import CRITERIA

__all__ = ["main"]


class UserError(DKMeansError):
    """An error the user can fix: printed as one line, exit code 2."""


# --------------------------------------------------------------------------- helpers


def _k(value: str):
    if value == "auto":
        return "auto"
    try:
        k = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--k must be 'auto' or an int, not {value!r}") from None
    if k < 1:
        raise argparse.ArgumentTypeError("--k must be at least 1")
    return k


def _k_range(value: str) -> list[int]:
    try:
        lo, hi = (int(v) for v in value.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--k-range must be LOW:HIGH (both included), e.g. 2:16, not {value!r}"
        ) from None
    return [lo, hi]


def _pca(value: str):
    if value.lower() == "none":
        return None
    try:
        return int(value) if value.isdigit() else float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--pca must be a variance share (0.95), a number of components (5) or none, "
            f"not {value!r}"
        ) from None


def _weights(value: str) -> dict:
    try:
        pairs = (item.split("=") for item in value.split(","))
        return {name.strip(): float(w) for name, w in pairs}
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--score-weights must be FEATURE=W,FEATURE=W, not {value!r}"
        ) from None


@contextlib.contextmanager
def _log_to_stderr(verbose: int):
    """The CLI is the application: it shows the ``dkmeans`` loggers' INFO (``-v``) or
    DEBUG (``-vv``) records on stderr for the command."""
    if not verbose:
        yield
        return
    root = logging.getLogger("dkmeans")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[dkmeans] %(message)s"))
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose >= 2 else logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


@contextlib.contextmanager
def _session(args):
    """Logging, progress bars and the cluster for one command."""
    from .._engine.log import progress
    from .deploy import open_cluster

    verbose = 0 if args.quiet else args.verbose
    with contextlib.ExitStack() as stack:
        stack.enter_context(_log_to_stderr(verbose))
        if not args.quiet and (sys.stderr.isatty() or verbose):
            stack.enter_context(progress(sys.stderr))
        client = stack.enter_context(open_cluster(args.cluster))
        if client is not None and not args.quiet:
            print(f"dashboard: {client.dashboard_link}", flush=True)
        yield client


def _print_table(df, columns=None, digits: int = 4) -> None:
    import pandas as pd

    with pd.option_context("display.width", 160, "display.max_columns", 30,
                           "display.precision", digits):  # fmt: skip
        print((df if columns is None else df[columns]).to_string(index=False))


def _print_result(result) -> None:
    km = result.kmeans
    if result.selection is not None:
        print(f"\nk selection (criterion: {result.selection.criterion})")
        _print_table(result.selection.table, ["k", "inertia", "silhouette", "stratified_silhouette",
                     "davies_bouldin", "calinski_harabasz", "iterations", "seconds"])  # fmt: skip
        print(result.selection.confidence.summary())
    print(f"\nk: {km.cluster_centers_.shape[0]}   features after PCA: {result.n_features_out}   "
          f"iterations: {km.n_iter_}   inertia: {km.inertia_:.6g}")  # fmt: skip
    print("\narchetypes\n" + result.archetypes.to_markdown())
    if result.changes is not None:
        print(result.changes.short() + "\n")
    for label, path in (("labels", result.labels_path), ("model", result.model_path)):
        if path:
            print(f"{label}: {path}")
    for path in result.profile_paths + result.plot_paths:
        print(f"wrote: {path}")
    steps = ", ".join(f"{k} {v:.1f}s" for k, v in result.seconds.items())
    print(f"seconds: {steps}")


# --------------------------------------------------------------------------- commands


def _job_from_args(args, store: str):
    from .pipeline import Job

    return Job(
        store=store, storage_options=storage_options(args.storage), variable=args.variable,
        k=args.k, k_range=args.k_range,
        criterion=args.criterion, on_low_confidence=args.on_low_confidence,
        scale=not args.no_scale, pca=args.pca,
        random_state=args.random_state, labels_out=args.labels_out,
        write_labels=not args.no_labels, overwrite=args.overwrite, model_out=args.model_out,
        align_to=args.align_to, align_max_distance=args.align_max_distance,
        score=args.score_weights or args.score,
        profile_out=args.profile_out, plots=args.plots, cluster=args.cluster,
        fit_sample=args.fit_sample, checkpoint=args.checkpoint,
        resume=args.resume, feature_names=args.feature_names,
    )  # fmt: skip


def _fit(args) -> int:
    from .pipeline import run

    job = _job_from_args(args, args.store)
    with _session(args):
        result = run(job)
    _print_result(result)
    return 0


def _run_job(args) -> int:
    from .pipeline import Job, run

    job = Job.from_yaml(args.job)
    args.cluster = args.cluster or job.cluster
    with _session(args):
        result = run(job)
    _print_result(result)
    return 0


def _check_model_features(model, arr) -> None:
    from ..io import feature_names

    fitted = getattr(model, "feature_names_in_", None)
    if fitted is None and hasattr(model, "steps"):
        fitted = getattr(model.steps[0][1], "feature_names_in_", None)
    n_in = getattr(model, "n_features_in_", None) or model.steps[0][1].n_features_in_
    if arr.shape[1] != n_in:
        raise UserError(
            f"the store has {arr.shape[1]} features but the model was trained on {n_in}"
        )
    names = feature_names(arr)
    if fitted is not None and names is not None and list(names) != list(fitted):
        raise UserError(
            f"the store's features {list(names)} differ from the model's {list(fitted)}"
        )


def _records(args):
    from .pipeline import open_records

    return open_records(args.store, args.variable, args.feature_names, default_names=False,
                        storage_options=storage_options(args.storage))  # fmt: skip


def _predict(args) -> int:
    from ..io import write_labels
    from ..persistence import load

    model = load(args.model)
    X, arr = _records(args)
    _check_model_features(model, arr)
    target, _, name = (args.labels_out or "").partition(":")
    with _session(args):
        labels = model.predict(X)
        path = write_labels(
            unwrap(labels), arr, name or "cluster",
            into=target or None, overwrite=args.overwrite,
        )  # fmt: skip
    print(f"labels: {path}")
    return 0


def _profile(args) -> int:
    from ..archetypes import profile_clusters
    from ..persistence import load

    model = load(args.model)
    X, arr = _records(args)
    _check_model_features(model, arr)
    km = model.steps[-1][1] if hasattr(model, "steps") else model
    ids = getattr(km, "cluster_ids_", None)
    with _session(args):
        labels = model.predict(X)
        arch = profile_clusters(
            X, unwrap(labels),
            n_clusters=km.cluster_centers_.shape[0], cluster_ids=ids,
            score=args.score_weights or args.score,
        )  # fmt: skip
    print(arch.to_markdown())
    if args.out:
        from .pipeline import _write_profiles

        for path in _write_profiles(arch, Path(args.out)):
            print(f"wrote: {path}")
    return 0


def _select_k(args) -> int:
    args.no_labels, args.model_out, args.align_to, args.labels_out = True, None, None, None
    args.align_max_distance = None
    args.k, args.profile_out, args.score, args.score_weights = "auto", None, None, None
    args.overwrite, args.checkpoint, args.resume = False, None, False
    args.on_low_confidence = "warn"  # it writes nothing, so prints the table whatever it says
    return _fit(args)


def _info(args) -> int:
    from ..io import store_info

    info = store_info(args.store, args.variable, storage_options=storage_options(args.storage))
    for key, value in info.items():
        print(f"{key}: {value}")
    return 0


def _demo(args) -> int:
    from sklearn.metrics import adjusted_rand_score

    from .datasets import write_communities
    from .pipeline import Job, run

    out = Path(args.out or "dkmeans-demo")
    out.mkdir(parents=True, exist_ok=True)
    store = out / "communities.zarr"
    t = time.perf_counter()
    write_communities(store, args.rows, chunks=max(10_000, args.rows // 16),
                      random_state=args.random_state, overwrite=True)  # fmt: skip
    print(f"example store: {store} ({args.rows:,} communities x 10 features, "
          f"{time.perf_counter() - t:.1f}s to write)")  # fmt: skip
    args.cluster = args.cluster or {"kind": "local", "n_workers": args.workers,
                                    "threads_per_worker": 1, "dashboard_address": ":0"}  # fmt: skip
    job = Job(
        store=str(store), variable="features", k="auto", k_range=[2, 10],
        random_state=args.random_state, overwrite=True, model_out=str(out / "model"),
        profile_out=str(out), plots=str(out / "plots"),
        score={"retention_30d": 1.0, "engagement_rate": 1.0, "churn_rate": -1.0},
    )  # fmt: skip
    t = time.perf_counter()
    with _session(args):
        result = run(job)
        planted = zarr.open_array(str(store / "archetype"), mode="r")[:]
        found = zarr.open_array(result.labels_path, mode="r")[:]
    seconds = time.perf_counter() - t
    _print_result(result)
    keep = planted >= 0
    ari = adjusted_rand_score(planted[keep], found[keep])
    print(f"agreement with the planted archetypes (adjusted Rand index): {ari:.3f}")
    print(f"pipeline seconds: {seconds:.1f}")
    return 0


# --------------------------------------------------------------------------- parser


def storage_options(pairs) -> dict | None:
    """``KEY=VALUE`` pairs as fsspec storage options: a dotted key nests
    (``client_kwargs.endpoint_url=...``); true/false and numbers are parsed."""
    if not pairs:
        return None
    out: dict = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserError(f"--storage-option expects KEY=VALUE, not {pair.split('=')[0]!r}")
        parsed = {"true": True, "false": False}.get(value.lower(), value)
        if isinstance(parsed, str):
            with contextlib.suppress(ValueError):
                parsed = float(value) if "." in value else int(value)
        *parents, leaf = key.split(".")
        node = out
        for name in parents:
            node = node.setdefault(name, {})
        node[leaf] = parsed
    return out


def _store_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage-option", action="append", metavar="KEY=VALUE", dest="storage",
                   help="an fsspec storage option for a URL store (repeatable; "
                        "client_kwargs.endpoint_url=... nests)")  # fmt: skip


def _common(p: argparse.ArgumentParser) -> None:
    _store_options(p)
    p.add_argument("--cluster", help="cluster config YAML (default: threaded scheduler)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or logs")
    p.add_argument("-v", "--verbose", action="count", default=0, help="log each step")


def _feature_names(value: str) -> list[str]:
    """``a,b,c``, or ``@FILE`` with the names one per line (or comma-separated)."""
    text = value
    if value.startswith("@"):
        try:
            text = Path(value[1:]).read_text()
        except OSError as err:
            raise argparse.ArgumentTypeError(f"--feature-names {value}: {err}") from None
    names = [n.strip() for line in text.splitlines() for n in line.split(",")]
    names = [n for n in names if n]
    if not names:
        raise argparse.ArgumentTypeError(f"--feature-names {value!r} holds no names")
    return names


def _names_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--feature-names", type=_feature_names, metavar="A,B,C|@FILE",
                   help="names of the records' columns (default: the store's, else "
                        "x0, x1, ...)")  # fmt: skip


def _fit_sample(value: str):
    if value.lower() in ("auto", "none"):
        return None if value.lower() == "none" else "auto"
    if not value.isdigit():
        raise argparse.ArgumentTypeError(
            f"--fit-sample must be auto, none or a number of rows, not {value!r}"
        )
    return int(value)


def _fit_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", help="Zarr store of the records")
    p.add_argument("--variable", help="the records' array in the store's group")
    p.add_argument("--k", type=_k, default="auto", help="'auto' (default) or a number")
    p.add_argument("--k-range", type=_k_range, default=[2, 16], help="LOW:HIGH, both included")
    p.add_argument("--criterion", default="silhouette", choices=list(CRITERIA))
    p.add_argument("--no-scale", action="store_true", help="skip standard scaling")
    p.add_argument("--pca", type=_pca, default=0.95, help="0.95 (variance), N, or none")
    p.add_argument(
        "--fit-sample",
        type=_fit_sample,
        default="auto",
        help="rows the k sweep and fit run on before polishing on all rows: "
        "auto (default: when the records are not kept in memory), N, or none",
    )
    p.add_argument("--random-state", type=int, default=0)
    p.add_argument("--plots", help="folder for PNG plots")
    _names_option(p)
    _common(p)


def _model_command(sub, name: str, help: str, func) -> argparse.ArgumentParser:
    """A subcommand taking a saved MODEL and a STORE."""
    p = sub.add_parser(name, help=help)
    p.add_argument("model", help="model directory (dkmeans fit --model-out)")
    p.add_argument("store", help="Zarr store of the records")
    p.add_argument("--variable", help="the records' array in the store's group")
    _names_option(p)
    _common(p)
    p.set_defaults(func=func)
    return p


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="dkmeans", description="Out-of-core k-means on Zarr stores with Dask."
    )
    parser.add_argument("--version", action="version", version=f"dkmeans {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="generate a communities store and run the whole job")
    demo.add_argument("--rows", type=int, default=1_000_000)
    demo.add_argument("--workers", type=int, default=2)
    demo.add_argument("--random-state", type=int, default=0)
    demo.add_argument("--out", help="output folder (default: ./dkmeans-demo)")
    _common(demo)
    demo.set_defaults(func=_demo)

    fit = sub.add_parser("fit", help="scale, PCA, choose k, fit, write labels and profiles")
    _fit_options(fit)
    fit.add_argument("--model-out", help="directory to save the model to")
    fit.add_argument("--labels-out", help="STORE[:NAME] (default: 'cluster' beside the records)")
    fit.add_argument("--no-labels", action="store_true", help="do not write labels")
    fit.add_argument("--align-to", help="saved model whose cluster IDs to keep (and report "
                     "what changed since it)")  # fmt: skip
    fit.add_argument("--align-max-distance", type=float, metavar="SD",
                     help="with --align-to: largest centre move (reference standard "
                          "deviations) still counted as the same archetype")  # fmt: skip
    fit.add_argument("--profile-out", help="folder for archetypes.csv and archetypes.md")
    fit.add_argument("--score", help="ranking expression over feature means")
    fit.add_argument("--score-weights", type=_weights, help="FEATURE=W,... over standardised means")
    fit.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    fit.add_argument("--checkpoint", help="folder for the fit's state after every iteration")
    fit.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    fit.add_argument("--on-low-confidence", choices=["warn", "error"], default="warn",
                     help="with --k auto, when the criteria disagree on k or it is unstable: "
                          "log a warning (default) or stop before writing anything")  # fmt: skip
    fit.set_defaults(func=_fit)

    run = sub.add_parser("run", help="run a job described in a YAML file")
    run.add_argument("job", help="job YAML (the fields of dkmeans.pipeline.Job)")
    _common(run)
    run.set_defaults(func=_run_job)

    sel = sub.add_parser("select-k", help="print the k table (writes nothing)")
    _fit_options(sel)
    sel.set_defaults(func=_select_k)

    pred = _model_command(sub, "predict", "label a store with a saved model", _predict)
    pred.add_argument("--labels-out", help="STORE[:NAME] (default: 'cluster' beside the records)")
    pred.add_argument("--overwrite", action="store_true")

    prof = _model_command(sub, "profile", "archetype table of a store under a model", _profile)
    prof.add_argument("--score", help="ranking expression over feature means")
    prof.add_argument("--score-weights", type=_weights)
    prof.add_argument("--out", help="folder for archetypes.csv and archetypes.md")

    info = sub.add_parser("info", help="shape, chunks, dtype, codecs and size of a store")
    info.add_argument("store")
    info.add_argument("--variable")
    _store_options(info)
    info.set_defaults(func=_info)
    return parser


def _log_unraisable(unraisable) -> None:
    logging.getLogger("dkmeans").debug("ignored: %s in %r", unraisable.exc_value, unraisable.object)


# Shown as one line: dkmeans' own errors, and what the environment raises for a path,
# a store, a missing optional package or a bad YAML file.  Anything else is a bug and
# keeps its traceback.
_USER_ERRORS = (DKMeansError, OSError, ImportError, yaml.YAMLError, zarr.errors.BaseZarrError)


def main(argv=None) -> int:
    """Entry point of the ``dkmeans`` console script."""

    args = build_parser().parse_args(argv)
    # errors the object-store clients raise while closing at exit (e.g. aiobotocore's
    # "created in a different Context") go to the debug log, not as a traceback
    sys.unraisablehook = _log_unraisable
    if getattr(args, "rows", 1) < 1:
        print("dkmeans: error: --rows must be at least 1", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except _USER_ERRORS as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        logging.getLogger("dkmeans").debug("error", exc_info=True)
        print(f"dkmeans: error: {message}", file=sys.stderr)
        return 2


def entry() -> None:
    """The console script and ``python -m dkmeans``: after a failed command, leave at
    once, so that object-store clients closing at interpreter exit add nothing to the
    one-line error."""
    code = main()
    if code:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    entry()
