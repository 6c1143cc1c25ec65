"""Survey scale: shards + merge, and a Dask cluster, give the one-process scan's catalog."""

import hashlib
import json
import os
import subprocess
import sys
import signal

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import fake_cutout, write_cube, write_per_band
from lensscore import scan
from lensscore.catalog import read_catalog
from lensscore.cli import app
from lensscore.errors import LensscoreError
from lensscore.scan import parse_shard, shard_of

runner = CliRunner()


def rows(path):
    t = read_catalog(path)
    return [tuple(str(v) for v in r) for r in t]


@pytest.fixture(scope="module")
def many(tmp_path_factory):
    import numpy as np

    rng = np.random.default_rng(7)
    root = tmp_path_factory.mktemp("many")
    for cls in ("lenses", "nonlenses"):
        (root / cls).mkdir()
        for k in range(40):
            write_cube(root / cls / f"o{k:03d}.fits", fake_cutout(rng, lens=cls == "lenses"))
    write_per_band(root / "lenses", "pb", fake_cutout(rng))
    (root / "nonlenses" / "junk.fits").write_bytes(b"not a fits file at all")
    return root


def test_shard_assignment_is_a_stable_partition():
    ids = [f"dir{k % 7}/obj{k}" for k in range(2000)]
    n = 5
    parts = [[i for i in ids if shard_of(i, n) == k] for k in range(1, n + 1)]
    assert sorted(sum(parts, [])) == sorted(ids)  # every id exactly once
    assert all(300 < len(p) < 500 for p in parts)  # roughly even
    # the documented hash (BLAKE2b of the id, 8 bytes, big-endian) -- not Python's hash(),
    # which changes between processes: another process with another hash seed agrees
    want = [int.from_bytes(hashlib.blake2b(i.encode(), digest_size=8).digest(), "big") % n + 1
            for i in ids[:50]]
    assert [shard_of(i, n) for i in ids[:50]] == want
    code = ("import json, sys; from lensscore.scan import shard_of; "
            f"print(json.dumps([shard_of(i, {n}) for i in json.loads(sys.argv[1])]))")
    other = subprocess.run([sys.executable, "-c", code, json.dumps(ids[:50])], check=True,
                           capture_output=True, text=True, env={**os.environ,
                                                                "PYTHONHASHSEED": "12345"})
    assert json.loads(other.stdout) == want
    assert parse_shard("3/8") == (3, 8)
    for bad in ("0/3", "4/3", "x", "1/0", "2"):
        with pytest.raises(LensscoreError):
            parse_shard(bad)


def test_sharded_scans_merge_to_the_one_shot_scan(many, tmp_path, rot_model):
    one = tmp_path / "one.ecsv"
    assert scan(many, rot_model, output=one).exit_code == 3  # junk.fits -> error row
    failed = [str(r["id"]) for r in read_catalog(one) if r["status"] == "error"]
    assert failed == ["nonlenses/junk"]
    parts, codes = [], []
    for k in (1, 2, 3):
        p = tmp_path / (f"s{k}.csv" if k == 2 else f"s{k}.ecsv")  # .csv records no shard
        r = runner.invoke(app, ["scan", str(many), "-m", str(rot_model), "-o", str(p),
                                "--shard", f"{k}/3", "-q"])
        codes.append(r.exit_code)
        parts.append(p)
    # the shard holding junk.fits (3/3 by the documented hash) finishes with 3, the others 0
    assert shard_of("nonlenses/junk", 3) == 3 and codes == [0, 0, 3], codes
    assert sum(len(read_catalog(p)) for p in parts) == len(read_catalog(one))
    r = runner.invoke(app, ["merge", *map(str, parts), "-o", str(tmp_path / "all.ecsv"),
                            "--inputs", str(many)])
    assert r.exit_code == 0, r.output
    assert rows(tmp_path / "all.ecsv") == rows(one)

    # a shard missing, another given twice: reported, exit 3
    r = runner.invoke(app, ["merge", str(parts[0]), str(parts[0]), str(parts[2]), "-o",
                            str(tmp_path / "bad.ecsv"), "--inputs", str(many)])
    assert r.exit_code == 3
    assert "missing shards (1): 2/3" in r.output and "shards given twice (1): 1/3" in r.output
    assert "ids in more than one row" in r.output and "inputs with no row" in r.output
    assert len(read_catalog(tmp_path / "bad.ecsv")) == len(read_catalog(parts[0])) + len(
        read_catalog(parts[2]))
    r = runner.invoke(app, ["scan", str(many), "-m", str(rot_model), "--shard", "4/3"])
    assert r.exit_code == 2 and "K must be between 1 and N" in r.output
    r = runner.invoke(app, ["merge", str(parts[0]), str(one), "-o", str(tmp_path / "x.csv")])
    assert r.exit_code == 2  # a shard and a full scan do not mix
    # csv shards only: N from --shards, each catalog's shard from its ids
    r = runner.invoke(app, ["merge", str(parts[1]), "-o", str(tmp_path / "y.csv"),
                            "--shards", "3"])
    assert r.exit_code == 3 and "missing shards (2): 1/3, 3/3" in r.output


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as c, distributed.Client(c) as client:
        yield client


def test_dask_scan_equals_one_process(many, tmp_path, rot_model, cluster):
    one = tmp_path / "one.ecsv"
    scan(many, rot_model, output=one)
    res = scan(many, rot_model, output=tmp_path / "dask.ecsv", client=cluster)
    assert res.exit_code == 3 and res.n_failed == 1
    assert rows(tmp_path / "dask.ecsv") == rows(one)
    # resume on Dask: finished rows are kept, the rest scored once
    part = tmp_path / "part.ecsv"
    lines = (tmp_path / "dask.ecsv").read_text().splitlines(keepends=True)
    head = [ln for ln in lines if ln.startswith("#")]
    body = [ln for ln in lines if not ln.startswith("#")]
    part.write_text("".join(head + body[:30]))
    res = scan(many, rot_model, output=part, client=cluster, resume=True)
    assert res.n_skipped == 29 and rows(part) == rows(one)


def test_dask_worker_killed_mid_scan(many, tmp_path, rot_model, cluster, monkeypatch):

    import lensscore.distributed as dist

    monkeypatch.setattr(dist, "CHUNK", 6)  # 14 chunks: the kill lands mid-scan
    one = tmp_path / "one.ecsv"
    scan(many, rot_model, output=one)
    pids = list(cluster.run(os.getpid).values())
    killed = []

    def progress(done, total):
        if not killed:
            os.kill(pids[0], signal.SIGKILL)
            killed.append(done)

    out = tmp_path / "dask.ecsv"
    res = scan(many, rot_model, output=out, client=cluster, progress=progress)
    assert killed and killed[0] < res.n_inputs
    got = rows(out)
    assert len({r[0] for r in got}) == len(got) == res.n_inputs  # complete, no duplicates
    assert got == rows(one)
    cluster.wait_for_workers(2, timeout=60)  # the nanny restarted it


def test_connect_scheduler_file_tls_and_bad_specs(many, tmp_path, rot_model):
    distributed = pytest.importorskip("distributed")
    pytest.importorskip("cryptography")
    from lensscore.distributed import close, connect

    with pytest.raises(LensscoreError, match="scheduler file"):
        connect(str(tmp_path / "no-such-scheduler.json"))
    with pytest.raises(LensscoreError, match="all three"):
        connect("tls://127.0.0.1:1", tls_ca_file=tmp_path / "ca.pem")
    # a TLS-only cluster: reached with the three files, through a scheduler file
    sec = distributed.Security.temporary()
    files = {}
    for name, pem in (("ca", sec.tls_ca_file), ("cert", sec.tls_client_cert),
                      ("key", sec.tls_client_key)):
        files[name] = tmp_path / f"{name}.pem"
        files[name].write_text(pem)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=":0", security=sec,
                                  protocol="tls://") as c:
        assert c.scheduler_address.startswith("tls://")
        sched = tmp_path / "scheduler.json"
        sched.write_text(json.dumps({"address": c.scheduler_address}))
        client = connect(str(sched), tls_ca_file=files["ca"], tls_cert=files["cert"],
                         tls_key=files["key"])
        try:
            res = scan(many, rot_model, client=client, rotations=False)
            ref = scan(many, rot_model, rotations=False)
            assert res.ids == ref.ids and np.allclose(res.scores, ref.scores, equal_nan=True)
        finally:
            close(client)


def test_dask_committee_equals_one_process(many, tmp_path, rot_model, conv_model, cluster):
    one = scan(many, [rot_model, conv_model], output=tmp_path / "one.ecsv", combine="median")
    res = scan(many, [rot_model, conv_model], output=tmp_path / "dask.ecsv", combine="median",
               client=cluster)
    assert res.members == ["rot", "conv"]
    assert rows(tmp_path / "dask.ecsv") == rows(tmp_path / "one.ecsv")
    np.testing.assert_array_equal(res.member_scores, one.member_scores)
