"""ASLR under torch.distributed (gloo, 2 CPU processes, DDP): every rank draws identical learning rates and ends
with identical parameters, although each rank starts with its own generator seed and sees its own metric."""

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from aslr.core import ASLRSearch

WORKER = textwrap.dedent(
    """
    import datetime, json, os, sys
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    rank = int(os.environ["RANK"])
    dist.init_process_group("gloo", rank=rank, world_size=2, timeout=datetime.timedelta(seconds=60))
    from aslr.torch import ASLR, layer_param_groups

    torch.manual_seed(100 + rank)  # different initial weights per rank: DDP must broadcast rank 0's
    net = torch.nn.Sequential(torch.nn.Linear(5, 12), torch.nn.Tanh(), torch.nn.Linear(12, 3))
    ddp = torch.nn.parallel.DistributedDataParallel(net)
    opt = torch.optim.SGD(layer_param_groups(net, momentum=0.9), lr=1.0)
    # a rank-specific generator: ASLR must broadcast rank 0's state, or the draws would differ
    sched = ASLR(opt, 0.05, generator=torch.Generator().manual_seed(1000 + rank))
    g = torch.Generator().manual_seed(rank)  # each rank trains on its own shard
    x, y = torch.randn(60, 5, generator=g), torch.randint(0, 3, (60,), generator=g)
    metrics = json.loads(os.environ["ASLR_METRICS"])[rank]
    lrs = [sched.get_last_lr()]
    for epoch in range(3):
        for i in range(5):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(ddp(x[i::5]), y[i::5]).backward()
            opt.step()
            sched.step()
            lrs.append(sched.get_last_lr())
        sched.observe(metrics[epoch])  # rank-specific metric: averaged over ranks
        lrs.append(sched.get_last_lr())
    params = [p.detach().flatten().tolist() for p in net.parameters()]
    out = {"lrs": lrs, "c": sched.c_history, "params": params}
    with open(os.environ["ASLR_OUT"], "w") as f:
        json.dump(out, f)
    dist.barrier()
    dist.destroy_process_group()
    """
)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_pair(tmp_path: Path, metrics, timeout=120):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    repo = Path(__file__).resolve().parent.parent
    port = _free_port()
    procs = []
    for rank in range(2):
        env = dict(
            os.environ,
            RANK=str(rank),
            WORLD_SIZE="2",
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
            ASLR_OUT=str(tmp_path / f"rank{rank}.json"),
            ASLR_METRICS=json.dumps(metrics),
            PYTHONPATH=str(repo) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            OMP_NUM_THREADS="1",
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, str(script)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = []
    try:
        for p in procs:
            out, _ = p.communicate(timeout=timeout)
            outputs.append(out)
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        pytest.fail(f"distributed ASLR workers did not finish within {timeout} s")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for rank, (p, out) in enumerate(zip(procs, outputs)):
        assert p.returncode == 0, f"rank {rank} failed:\n{out[-3000:]}"
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]


def test_gloo_two_ranks_draw_identical_rates_and_keep_identical_parameters(tmp_path):
    metrics = [[0.5, 0.6, 0.4], [0.5, 0.3, 0.9]]
    r0, r1 = _run_pair(tmp_path, metrics)
    assert r0["lrs"] == r1["lrs"]
    assert len(r0["lrs"]) == 1 + 3 * 6
    assert len({tuple(lr) for lr in r0["lrs"]}) == len(r0["lrs"])  # fresh draws at every step
    assert r0["params"] == r1["params"]
    # the metric seen by Algorithm 2 is the mean over ranks (rank 0 alone would have moved c at epoch 2)
    ref = ASLRSearch(0.05)
    expected = [0.05] + [ref.observe((a + b) / 2) for a, b in zip(*metrics)]
    assert r0["c"] == r1["c"] == expected == [0.05, 0.05, 0.05, 0.06]


ONE_RANK_WORKER = textwrap.dedent(
    """
    import datetime, json, os, pathlib, time
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    rank = int(os.environ["RANK"])
    # the default group keeps torch's long timeout: only ASLR's own group may end the wait
    dist.init_process_group("gloo", rank=rank, world_size=2, timeout=datetime.timedelta(seconds=120))
    from aslr.torch import ASLR

    net = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(4, 2))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    sched = ASLR(opt, 0.05, sync_timeout=3)
    net(torch.ones(2, 4)).sum().backward()
    opt.step()
    sched.step()
    done = pathlib.Path(os.environ["ASLR_OUT"]).parent / "rank0.done"
    if rank == 0:  # the mistake: validation and observe() on rank 0 only
        t0 = time.monotonic()
        try:
            sched.observe(0.5)
            out = {"raised": None}
        except RuntimeError as exc:
            out = {"raised": str(exc)}
        out["seconds"] = time.monotonic() - t0
        with open(os.environ["ASLR_OUT"], "w") as f:
            json.dump(out, f)
        done.touch()
    else:  # rank 1 goes on without calling observe (stays alive until rank 0 has its answer)
        for _ in range(600):
            if done.exists():
                break
            time.sleep(0.1)
        with open(os.environ["ASLR_OUT"], "w") as f:
            json.dump({}, f)
    os._exit(0)  # the process group is in an error state on rank 0: no collective teardown
    """
)


def test_observe_on_one_rank_only_fails_fast_with_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "WORKER", ONE_RANK_WORKER)
    r0, _ = _run_pair(tmp_path, [[0.0], [0.0]])
    assert r0["raised"] is not None, "observe on rank 0 alone must not succeed"
    assert "every rank" in r0["raised"] and "sync_timeout=3" in r0["raised"]
    assert r0["seconds"] < 30, r0  # not the 30 min default process-group timeout
