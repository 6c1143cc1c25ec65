"""Scans on a Dask cluster: connecting (local, address, scheduler file, TLS) and scoring.

One ONNX session per worker process, files read where the worker runs (a shared file system),
results streamed back to the one catalog writer in input order; a lost worker's chunks are
recomputed by the scheduler and written once. Needs the ``[dask]`` extra.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

from .errors import LensscoreError
from .grid import ReadOptions
from .sources import Source
from .committee import from_recipe
from .pipeline import load_one, score_pending
from .scorer import Scorer

__all__ = ["connect", "close", "score_stream", "CHUNK"]

log = logging.getLogger(__name__)


def connect(spec: str, *, tls_ca_file=None, tls_cert=None, tls_key=None):
    """A ``dask.distributed.Client`` for ``spec``.

    Parameters
    ----------
    spec : str
        ``local:N`` (a LocalCluster of N single-threaded worker processes; ``local`` for one per
        core), a scheduler address (``tcp://host:8786``, ``tls://host:8786``), or the path of a
        scheduler file (the JSON that ``dask scheduler --scheduler-file`` writes, the usual way
        on HPC systems).
    tls_ca_file, tls_cert, tls_key : path, optional
        TLS for the connection (``distributed.Security``: the CA that signed the scheduler's
        certificate, this client's certificate and key); with them, encryption is required.
        Without them a ``tls://`` scheduler needs dask's own TLS configuration
        (``distributed.comm.tls.*``).

    Raises
    ------
    LensscoreError
        A spec that is none of these, missing TLS files, a scheduler that cannot be reached.
    """
    from ._optional import require

    require("HAS_DASK", "--dask")
    from distributed import Client, LocalCluster, Security

    tls = [tls_ca_file, tls_cert, tls_key]
    security = None
    if any(tls):
        if not all(tls):
            raise LensscoreError("TLS needs all three of --tls-ca-file, --tls-cert and --tls-key")
        for f in tls:
            if not Path(f).is_file():
                raise LensscoreError(f"{f}: TLS file not found")
        security = Security(tls_ca_file=str(tls_ca_file), tls_client_cert=str(tls_cert),
                            tls_client_key=str(tls_key), require_encryption=True)
    if spec == "local" or spec.startswith("local:"):
        try:
            n = int(spec.partition(":")[2] or 0) or None
        except ValueError:
            raise LensscoreError(f"--dask {spec!r}: use local:N with N a number") from None
        kw = {"security": security} if security else {}
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                               dashboard_address=None, **kw)
        return Client(cluster, **kw)
    kw = {"timeout": "30s"}
    if security is not None:
        kw["security"] = security
    if "://" in spec:
        if spec.startswith("tcp://") and security is None:
            host = spec[len("tcp://"):].rsplit(":", 1)[0]
            if host not in ("localhost", "127.0.0.1", "[::1]"):
                log.warning("--dask %s: plain tcp:// is neither encrypted nor authenticated; "
                            "anyone who can reach the scheduler can run code on its workers. "
                            "Use tls:// with --tls-ca-file/--tls-cert/--tls-key on shared "
                            "networks", spec)
        target = {"address": spec}
    elif Path(spec).is_file():
        target = {"scheduler_file": spec}
    else:
        raise LensscoreError(f"--dask {spec!r}: use local:N, a scheduler address "
                             "(tcp://host:8786, tls://host:8786) or a scheduler file")
    try:
        return Client(**target, **kw)
    except (OSError, TimeoutError) as exc:
        raise LensscoreError(f"--dask {spec}: cannot reach the scheduler ({exc})") from None
    except ValueError as exc:
        raise LensscoreError(f"--dask {spec}: {exc}") from None


def close(client) -> None:
    """Close ``client``, and the LocalCluster :func:`connect` started for it."""
    if client is None:
        return
    cluster = getattr(client, "cluster", None)
    client.close()
    if cluster is not None and type(cluster).__name__ == "LocalCluster":
        cluster.close()


#: Sources per Dask task: large enough to amortise scheduling (~1 ms a task), small enough to
#: spread a scan over workers and to lose little work when one dies.
CHUNK = 64
_SCORERS: dict = {}


def _score_chunk(recipe: tuple, chunk: list[Source], rotations: list[bool],
                 read_options: ReadOptions, tta: str = "none"):
    """On a worker: load and score ``chunk`` with the worker's one cached scorer (a
    :class:`Scorer` or a committee, built from its recipe)."""
    sc = _SCORERS.get(recipe)
    if sc is None:
        try:
            from distributed import get_worker

            threads = get_worker().state.nthreads
        except (ImportError, ValueError, AttributeError):
            threads = 1
        sc = _SCORERS[recipe] = from_recipe(recipe, threads)
    pending = [(src, load_one(src, read_options, sc.spec), f)
               for src, f in zip(chunk, rotations)]
    return score_pending(pending, sc, tta)


def score_stream(sources, scorer: Scorer, rotations: list[bool], client,
                 options: ReadOptions, tta: str = "none"):
    """:func:`lensscore.pipeline.score_stream` on a Dask cluster: yields ``(rows, scores,
    transform_scores)`` per chunk of :data:`CHUNK` sources, in input order.

    Parameters
    ----------
    sources : sequence of Source
    scorer : Scorer or Committee
        Rebuilt on each worker from its :meth:`~lensscore.scorer.Scorer.recipe` (one session
        a worker process).
    rotations : list of bool
        Per source: score its 8 transforms too.
    client : dask.distributed.Client
    options : ReadOptions
        How inputs are read (the model's grid and the overrides).
    tta : {"none", "rot4", "d8"}

    Yields
    ------
    rows, scores, transform_scores
        As :func:`lensscore.pipeline.score_pending`.
    """
    from distributed import as_completed

    if not sources:
        return
    recipe = scorer.recipe()
    chunks = [list(sources[i:i + CHUNK]) for i in range(0, len(sources), CHUNK)]
    flags = [list(rotations[i:i + CHUNK]) for i in range(0, len(sources), CHUNK)]
    n_workers = max(1, len(client.scheduler_info().get("workers", {})))
    limit = max(4, 3 * n_workers)  # chunks in flight: workers stay busy, memory stays bounded
    todo = iter(enumerate(chunks))
    live, done, nxt = {}, {}, 0
    ac = as_completed()
    tag = uuid.uuid4().hex[:8]

    def submit_next():
        for i, chunk in todo:
            # pure=False, unique key: a chunk lost with a worker is recomputed by the
            # scheduler; its result reaches the catalog once, from here, in input order
            f = client.submit(_score_chunk, recipe, chunk, flags[i], options, tta,
                              pure=False, retries=2, key=f"lensscore-{tag}-{i}")
            live[f.key] = (i, f)
            ac.add(f)
            return

    for _ in range(limit):
        submit_next()
    try:
        for f in ac:
            i, _ = live.pop(f.key)
            done[i] = f.result()
            f.release()
            submit_next()
            while nxt in done:
                yield done.pop(nxt)
                nxt += 1
    finally:
        if live:
            client.cancel([f for _, f in live.values()])


