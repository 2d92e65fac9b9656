"""Recipe CLI: ``python -m hls4ml_skiptrim.training.recipes {teacher,skipper,trimmer,nonresnet} [options]``.

* ``teacher``   train a ResNet-n (``--skips long``; ``--skips short`` = ShortResNet, the NonResNet teacher)
* ``skipper``   Algorithm 1 + Eq 4.4, α = 1: prune every skip of ``--teacher`` (Listing 4.1)
* ``trimmer``   Algorithm 1 + Eq 4.4, α = 3: split every long skip into two short ones (Listing 4.2)
* ``nonresnet`` NonResNet (Weng, Khodamoradi & Kastner): remove the short skips of a ShortResNet teacher 3 blocks at a time

Frameworks: ``--framework torch`` (PyTorch / Brevitas with ``--quant``) or ``keras`` (Keras 3; QKeras via
tf-keras with ``--quant``).  Data: ``--data mnist`` (the MNIST 10k split, ``../shared/data/mnist`` or
``--data-dir``), ``cluttered-mnist`` (the 10k split cluttered and translated), ``digits`` (sklearn), ``cifar10``/``cifar100``/``svhn`` (``--data-dir``, python/mat files).
ASLR is the default learning-rate scheduler.  Every run writes into ``--out``: the model, ``log.json``
(per-epoch metrics and modifications), ``checkpoint`` (``--resume`` continues the same schedule) and
``result.json`` (test accuracy).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np


def _args(argv):
    ap = argparse.ArgumentParser(
        prog="python -m hls4ml_skiptrim.training.recipes", description=__doc__.splitlines()[0]
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("teacher", "skipper", "trimmer", "nonresnet"):
        p = sub.add_parser(name)
        p.add_argument("--framework", choices=["torch", "keras"], default="torch")
        p.add_argument(
            "--data",
            default="mnist",
            choices=["mnist", "cluttered-mnist", "digits", "cifar10", "cifar100", "svhn"],
        )
        p.add_argument("--data-dir", default=None)
        p.add_argument("--n-train", type=int, default=None, help="training examples (mnist/digits split)")
        p.add_argument("--val-fraction", type=float, default=0.1)
        p.add_argument("--epochs", type=int, default=None)
        p.add_argument("--lr", type=float, default=1e-3)
        p.add_argument("--batch", type=int, default=64)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--scheduler", choices=["aslr", "constant"], default="aslr")
        p.add_argument("--out", required=True)
        p.add_argument("--no-progress", action="store_true")
        if name == "teacher":
            p.add_argument("--depth", type=int, default=20)
            p.add_argument("--skips", choices=["long", "short"], default="long")
            p.add_argument("--arrangement", choices=list("abcd"), default="b")
            p.add_argument("--width", type=int, default=16)
            p.add_argument("--quant", default=None, help="fixed point <W,I>, e.g. '<8,3>'")
        else:
            p.add_argument("--teacher", required=True, help="--out folder of a `teacher` run")
            p.add_argument("--alpha", type=int, default=None)
            p.add_argument("--beta", type=float, default=0.35)
            p.add_argument(
                "--tail",
                type=int,
                default=10,
                help="epochs after the last modification (benchmarks/skiptrim_mnist.py: 1 cut the gradual "
                "schedule short, 10 let Skipper beat no-distillation on ResNet-20)",
            )
            p.add_argument("--resume", action="store_true")
    return ap.parse_args(argv)


def _data(a):
    from hls4ml_skiptrim.training.recipes.data import load

    xtr, ytr, xte, yte, n_classes = load(a.data, a.data_dir, a.n_train, a.seed)
    if not 0 < a.val_fraction < 1:
        raise ValueError(f"--val-fraction must be in (0, 1), got {a.val_fraction}")
    n_val = max(1, int(a.val_fraction * len(xtr)))
    return xtr[n_val:], ytr[n_val:], xtr[:n_val], ytr[:n_val], xte, yte, n_classes


_TEACHER_FILE = {"torch": "model.pt", "keras": "model.json"}


def _teacher_file(a) -> Path:
    """The teacher run's model file for ``--framework``, or a ValueError naming ``--teacher`` and the fix."""
    folder = Path(a.teacher)
    want = folder / _TEACHER_FILE[a.framework]
    if want.is_file():
        return want
    other = next((fw for fw, f in _TEACHER_FILE.items() if (folder / f).is_file()), None)
    hint = (
        f"it holds a {other} teacher: pass --framework {other}"
        if other
        else "expected the --out folder of a `teacher` run"
    )
    raise ValueError(f"--teacher {a.teacher}: no {want.name} for --framework {a.framework} ({hint})")


def _run_torch(a, out: Path, data):
    import torch

    from hls4ml_skiptrim.training import torch as stt

    torch.manual_seed(a.seed)
    xtr, ytr, xv, yv, xte, yte, n_classes = data
    kw = dict(lr=a.lr, batch_size=a.batch, scheduler=a.scheduler, seed=a.seed, progress=not a.no_progress)
    if a.cmd == "teacher":
        model = stt.resnet(
            a.depth,
            a.skips,
            a.quant,
            input_shape=xtr.shape[1:],
            num_classes=n_classes,
            arrangement=a.arrangement,
            width=a.width,
        )
        stt.fit(model, xtr, ytr, xv, yv, epochs=a.epochs or 10, log=out / "log.json", **kw)
    else:
        ck = torch.load(_teacher_file(a), weights_only=False)
        teacher = stt.ResNet(ck["config"])
        teacher.load_state_dict(ck["state"])
        cls = {"skipper": stt.Skipper, "trimmer": stt.Trimmer, "nonresnet": stt.NonResNet}[a.cmd]
        st = cls(teacher, alpha=a.alpha, beta=a.beta, log=out / "log.json")
        epochs = a.epochs or st.schedule.epochs_to_finish + a.tail
        stt.fit(st, xtr, ytr, xv, yv, epochs=epochs, checkpoint=out / "checkpoint.pt", resume=a.resume, **kw)
        model = st.export(fold=False)
    torch.save({"config": model.config, "state": model.state_dict()}, out / "model.pt")
    return stt.evaluate(model, xte, yte)[1], model.modes


def _run_keras(a, out: Path, data):
    xtr, ytr, xv, yv, xte, yte, n_classes = data
    if (
        a.cmd == "teacher"
        and a.quant is not None
        or a.cmd != "teacher"
        and json.loads(_teacher_file(a).read_text())["quant"] is not None
    ):
        os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # QKeras: before TensorFlow is imported
    from hls4ml_skiptrim.training import keras as sk

    xtr, xv, xte = sk.to_nhwc(xtr), sk.to_nhwc(xv), sk.to_nhwc(xte)
    kw = dict(
        lr=a.lr, batch_size=a.batch, scheduler=a.scheduler, seed=a.seed, verbose=0 if a.no_progress else 1
    )
    if a.cmd == "teacher":
        model = sk.resnet(
            a.depth,
            a.skips,
            a.quant,
            input_shape=xtr.shape[1:],
            num_classes=n_classes,
            arrangement=a.arrangement,
            width=a.width,
        )
        hist = sk.fit_teacher(model, xtr, ytr, xv, yv, epochs=a.epochs or 10, **kw)
        (out / "log.json").write_text(
            json.dumps(
                {
                    "meta": sk.config_of(model),
                    "history": {k: [float(v) for v in vals] for k, vals in hist.history.items()},
                },
                indent=1,
            )
        )
    else:
        cfg = json.loads((Path(a.teacher) / "model.json").read_text())
        teacher = sk.resnet(**{k: v for k, v in cfg.items() if k not in ("gated", "fold_bn")})
        teacher.load_weights(str(Path(a.teacher) / "model.weights.h5"))
        cls = {"skipper": sk.Skipper, "trimmer": sk.Trimmer, "nonresnet": sk.NonResNet}[a.cmd]
        st = cls(
            teacher, alpha=a.alpha, beta=a.beta, log=out / "log.json", checkpoint=out / "checkpoint.json"
        )
        start = st.load(out / "checkpoint.json") if a.resume and (out / "checkpoint.json").is_file() else 0
        epochs = a.epochs or st.schedule.epochs_to_finish + a.tail
        sk.fit_student(st, xtr, ytr, xv, yv, epochs=epochs, initial_epoch=start, **kw)
        model = st.export(fold_bn=False)
    cfg = sk.config_of(model)
    (out / "model.json").write_text(json.dumps(cfg))
    model.save_weights(str(out / "model.weights.h5"))
    return sk.accuracy(model, xte, yte), cfg["skips"]


def main(argv=None) -> int:
    a = _args(argv)
    if a.cmd != "teacher":
        _teacher_file(a)  # fail before any data is loaded or --out is created
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    data = _data(a)
    np.random.seed(a.seed)
    acc, modes = (_run_torch if a.framework == "torch" else _run_keras)(a, out, data)
    result = {
        "command": a.cmd,
        "framework": a.framework,
        "data": a.data,
        "test_accuracy": acc,
        "skips": modes,
    }
    (out / "result.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
