"""SkipTrim for PyTorch and Brevitas: ResNet builder, Skipper/Trimmer/NonResNet training helper, BN folding.

Khodamoradi 2021, ch. 4 (Fig 4.3 a-d, Algorithm 1, Listings 4.1/4.2, Eq 4.3/4.4) and Weng, Khodamoradi & Kastner (NonResNet), for
torch users; same model family and arguments as :mod:`hls4ml_skiptrim.training.keras` except that ``input_shape`` is
channels-first ``(C, H, W)``.  Brevitas is imported only when ``quant`` is given.

* :func:`resnet` → :class:`ResNet`; every :class:`ResBlock` has a ``skip`` attribute in
  ``{"long", "short", "none"}`` read by ``forward`` (Listing 4.1/4.2's ``reshape`` flag), so a student's
  blocks are modified in place between epochs and a traced (torch.fx) skip-free block has no ``add``.
* :class:`Skipper`, :class:`Trimmer`, :class:`NonResNet`: frozen teacher, student = deep copy of the teacher,
  ``begin_epoch`` (Algorithm 1), ``loss`` (Eq 4.4, :func:`skiptrim_loss`), ``state_dict``/``save``/``load``
  (schedule + student + optimiser + scheduler) and :func:`fit` (training loop, ASLR by default, tqdm progress
  bars, JSON log).
* :func:`fold_bn`: Eq 4.3 on a copy of a float model (arrangements a-c), via :mod:`hls4ml_skiptrim.training.bnfold`.

Deviations: downsampling blocks project the skip with a 1×1 convolution + BN (He et al. option B); in a
trimmed downsampling block the first short skip carries that projection.  Brevitas ``<W,I>``: W-bit
power-of-two-scaled fixed point (``Int8WeightPerTensorFixedPoint`` / ``Uint8ActPerTensorFixedPoint`` with
``bit_width=W``); Brevitas learns the binary point from statistics instead of fixing I integer bits.
"""

from __future__ import annotations

import copy
from pathlib import Path

from hwreshape.extras import needs_torch  # noqa: F401  # isort: skip
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hls4ml_skiptrim.training.bnfold import fold_conv_bn
from hls4ml_skiptrim.training.schedule import (
    BETA,
    METHODS,
    SKIP_MODES,
    JsonLog,
    SkipTrimSchedule,
    blocks_for_depth,
    check_arrangement,
    check_beta,
    parse_quant,
    resolve_skips,
)

_ARCH_KEYS = ("depth", "quant", "input_shape", "num_classes", "arrangement", "width")


class _Layers:
    """Conv/ReLU/Linear factories: plain torch, or Brevitas quantized layers for ``quant=(W, I)``."""

    def __init__(self, quant):
        self.q = quant
        if quant is not None:
            import brevitas.nn as qnn
            from brevitas.quant import Int8WeightPerTensorFixedPoint, Uint8ActPerTensorFixedPoint

            self.qnn, self.wq, self.aq = qnn, Int8WeightPerTensorFixedPoint, Uint8ActPerTensorFixedPoint

    def conv(self, cin, cout, k, stride, bias=False):
        if self.q is None:
            return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=bias)
        return self.qnn.QuantConv2d(
            cin,
            cout,
            k,
            stride=stride,
            padding=k // 2,
            bias=bias,
            weight_quant=self.wq,
            weight_bit_width=self.q[0],
        )

    def act(self):
        if self.q is None:
            return nn.ReLU()
        return self.qnn.QuantReLU(act_quant=self.aq, bit_width=self.q[0])

    def linear(self, cin, cout):
        if self.q is None:
            return nn.Linear(cin, cout)
        return self.qnn.QuantLinear(cin, cout, bias=True, weight_quant=self.wq, weight_bit_width=self.q[0])


def _identity(x):
    return x


class ResBlock(nn.Module):
    """One residual block of Fig 4.3 (``arrangement`` a-d) with a switchable ``skip`` (long/short/none).

    Units (two per block): a: U1 = ReLU∘BN∘Conv, U2 = BN∘Conv, ReLU after the addition; b: ReLU∘BN∘Conv
    twice; c: BN∘Conv∘ReLU twice; d: Conv∘ReLU∘BN twice.  ``long``: ``U2(U1(x)) + P(x)``;
    ``short`` (Listing 4.2): ``y1 = U1(x) + P(x)``, ``y = U2(y1) + y1``; ``none`` (Listing 4.1): ``U2(U1(x))``.
    """

    def __init__(self, cin: int, cout: int, stride: int, arrangement: str, skip: str, layers: _Layers):
        super().__init__()
        self.arrangement = arrangement
        self.skip = skip
        self.conv1 = layers.conv(cin, cout, 3, stride)
        self.conv2 = layers.conv(cout, cout, 3, 1)
        self.bn1 = nn.BatchNorm2d(cin if arrangement == "d" else cout)
        self.bn2 = nn.BatchNorm2d(cout)
        self.act1, self.act2 = layers.act(), layers.act()
        self.post_act = layers.act() if arrangement == "a" else None
        if stride != 1 or cin != cout:
            self.proj_conv = layers.conv(cin, cout, 1, stride)
            self.proj_bn = nn.BatchNorm2d(cout)
        else:
            self.proj_conv = self.proj_bn = None

    @property
    def skip(self) -> str:
        return self._skip

    @skip.setter
    def skip(self, mode: str) -> None:
        if mode not in SKIP_MODES:
            raise ValueError(f"ResBlock.skip: expected one of {SKIP_MODES}, got {mode!r}")
        self._skip = mode

    def _unit(self, x, u: int):
        conv, bn, act = (self.conv1, self.bn1, self.act1) if u == 1 else (self.conv2, self.bn2, self.act2)
        if bn is None:  # folded into conv (Eq 4.3, fold_bn); None keeps the fx graph free of Identity nodes
            bn = _identity
        a = self.arrangement
        if a == "b" or (a == "a" and u == 1):
            return act(bn(conv(x)))
        if a == "a":
            return bn(conv(x))
        if a == "c":
            return bn(conv(act(x)))
        return conv(act(bn(x)))

    def _proj(self, x):
        if self.proj_conv is None:
            return x
        y = self.proj_conv(x)
        return y if self.proj_bn is None else self.proj_bn(y)

    def forward(self, x):
        if self._skip == "long":
            y = self._unit(self._unit(x, 1), 2) + self._proj(x)
        elif self._skip == "short":
            y1 = self._unit(x, 1) + self._proj(x)
            y = self._unit(y1, 2) + y1
        else:
            y = self._unit(self._unit(x, 1), 2)
        return self.post_act(y) if self.post_act is not None else y


class ResNet(nn.Module):
    """CIFAR-style ResNet-n (n = 6k+2) built by :func:`resnet`; ``config`` holds the build arguments."""

    def __init__(self, config: dict):
        super().__init__()
        self.config = dict(config)
        L = _Layers(None if config["quant"] is None else tuple(config["quant"]))
        arr, w = config["arrangement"], config["width"]
        c_in = config["input_shape"][0]
        self.stem_conv = L.conv(c_in, w, 3, 1)
        self.stem_bn = nn.BatchNorm2d(w) if arr in ("a", "b", "c") else None
        self.stem_act = L.act() if arr in ("a", "b") else None
        k = blocks_for_depth(config["depth"]) // 3
        blocks, cin = [], w
        for s in range(3):
            cout = w * 2**s
            for j in range(k):
                blocks.append(
                    ResBlock(cin, cout, 2 if (s > 0 and j == 0) else 1, arr, config["skips"][len(blocks)], L)
                )
                cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.head_bn = nn.BatchNorm2d(cin) if arr == "d" else None
        self.head_act = L.act() if arr in ("c", "d") else None
        # global average pooling as module layers (hls4ml's PyTorch frontend parses AvgPool2d + Flatten, not
        # F.adaptive_avg_pool2d): the final feature map is ceil(H/4) x ceil(W/4) after two stride-2 stages
        fh, fw = (-(-int(v) // 4) for v in config["input_shape"][1:])
        self.pool = nn.AvgPool2d((fh, fw))
        self.flatten = nn.Flatten()
        self.fc = L.linear(cin, config["num_classes"])

    @property
    def modes(self) -> list[str]:
        return [b.skip for b in self.blocks]

    def set_modes(self, modes) -> None:
        modes = resolve_skips(modes, len(self.blocks))
        for b, m in zip(self.blocks, modes):
            b.skip = m
        self.config["skips"] = list(modes)

    def forward(self, x):
        h = self.stem_conv(x)
        if self.stem_bn is not None:
            h = self.stem_bn(h)
        if self.stem_act is not None:
            h = self.stem_act(h)
        for b in self.blocks:
            h = b(h)
        if self.head_bn is not None:
            h = self.head_bn(h)
        if self.head_act is not None:
            h = self.head_act(h)
        return self.fc(self.flatten(self.pool(h)))


def resnet(
    depth: int,
    skips="long",
    quant=None,
    input_shape=(1, 28, 28),
    num_classes: int = 10,
    arrangement: str = "b",
    width: int = 16,
) -> ResNet:
    """CIFAR-style ResNet-``depth`` (6k+2) of Fig 4.3 ``arrangement`` blocks; ``skips`` per block or for all.

    ``quant``: None (float) or ``<W,I>`` (Brevitas).  ``input_shape``: (C, H, W).  Outputs logits.
    """
    n_blocks = blocks_for_depth(depth)
    modes = resolve_skips(skips, n_blocks)
    check_arrangement(arrangement)
    q = parse_quant(quant)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ValueError(f"width must be a positive int, got {width!r}")
    try:
        input_shape = tuple(int(v) for v in input_shape)
    except (TypeError, ValueError):
        raise TypeError(f"input_shape must be (C, H, W), got {input_shape!r}") from None
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise ValueError(
            f"input_shape must be (C, H, W) channels-first with positive sizes, got {input_shape}"
        )
    return ResNet(
        {
            "depth": int(depth),
            "skips": modes,
            "quant": None if q is None else list(q),
            "input_shape": list(input_shape),
            "num_classes": int(num_classes),
            "arrangement": arrangement,
            "width": int(width),
        }
    )


def check_compatible(teacher, student) -> None:
    """ValueError naming the first architecture difference between teacher and student (skips may differ)."""
    for name, m in (("teacher", teacher), ("student", student)):
        if not isinstance(m, ResNet):
            raise TypeError(
                f"{name} must be a hls4ml_skiptrim.training.torch.ResNet (use resnet()), got {type(m).__name__}"
            )
    for key in _ARCH_KEYS:
        if teacher.config[key] != student.config[key]:
            raise ValueError(
                f"teacher/student architecture mismatch: {key} = {teacher.config[key]!r} vs {student.config[key]!r}"
            )
    ts, ss = teacher.state_dict(), student.state_dict()
    for k, v in ts.items():
        if k not in ss or ss[k].shape != v.shape:
            raise ValueError(
                f"teacher/student architecture mismatch at {k}: {tuple(v.shape)} vs "
                f"{tuple(ss[k].shape) if k in ss else 'missing'}"
            )


def skiptrim_loss(student_logits, teacher_logits, labels, beta: float = BETA):
    """Eq 4.4: ``(1 − β)·cross_entropy(s, l) + β·mse(t, s)`` (batch means)."""
    beta = check_beta(beta)
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student/teacher logits shapes differ: {tuple(student_logits.shape)} vs "
            f"{tuple(teacher_logits.shape)}"
        )
    return (1.0 - beta) * F.cross_entropy(student_logits, labels) + beta * F.mse_loss(
        student_logits, teacher_logits
    )


def count_adds(model: nn.Module) -> int:
    """Number of ``add`` nodes in the torch.fx trace of ``model`` (skip additions)."""
    import operator

    class _Tracer(torch.fx.Tracer):  # Brevitas layers are leaves (their internals are not fx-traceable)
        def is_leaf_module(self, m, qualname):
            return type(m).__module__.startswith("brevitas") or super().is_leaf_module(m, qualname)

    graph = _Tracer().trace(model)
    return sum(
        n.op == "call_function" and n.target in (operator.add, operator.iadd, torch.add) for n in graph.nodes
    )


def fold_bn(model: ResNet) -> ResNet:
    """A copy of a float ResNet (arrangement a-c) with every Conv+BN pair folded into one Conv (Eq 4.3)."""
    if not isinstance(model, ResNet):
        raise TypeError(
            f"fold_bn expects a hls4ml_skiptrim.training.torch.ResNet, got {type(model).__name__}"
        )
    if model.config["quant"] is not None:
        raise ValueError("fold_bn: not for Brevitas models (folding would change the quantized weights)")
    if model.config["arrangement"] == "d":
        raise ValueError("fold_bn: arrangement 'd' puts BN before the convolution (not adjacent, Eq 4.3)")
    out = copy.deepcopy(model).eval()

    def fold(owner, conv_name, bn_name):
        conv, bn = getattr(owner, conv_name), getattr(owner, bn_name)
        if conv is None or bn is None:
            return
        k, b = fold_conv_bn(
            conv.weight.detach().numpy(),
            None if conv.bias is None else conv.bias.detach().numpy(),
            bn.weight.detach().numpy(),
            bn.bias.detach().numpy(),
            bn.running_mean.numpy(),
            bn.running_var.numpy(),
            bn.eps,
            out_axis=0,
        )
        new = nn.Conv2d(
            conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=True
        )
        with torch.no_grad():
            new.weight.copy_(torch.from_numpy(k))
            new.bias.copy_(torch.from_numpy(b))
        setattr(owner, conv_name, new)
        setattr(owner, bn_name, None)

    fold(out, "stem_conv", "stem_bn")
    for blk in out.blocks:
        fold(blk, "conv1", "bn1")
        fold(blk, "conv2", "bn2")
        fold(blk, "proj_conv", "proj_bn")
    out.config["folded"] = True
    return out


# ----------------------------------------------------------------------------------------------- distillation
class SkipTrim:
    """Common part of :class:`Skipper`, :class:`Trimmer`, :class:`NonResNet` (Algorithm 1 + Eq 4.4).

    ``teacher``: a trained :class:`ResNet` whose blocks all have the method's source mode (``long``; ``short``
    for NonResNet).  It is frozen (eval mode, no gradients).  The student is a deep copy of the teacher
    (Algorithm 1 lines 2-3) unless ``student=`` (same architecture) is given.
    """

    method = "skipper"

    def __init__(
        self,
        teacher: ResNet,
        alpha: int | None = None,
        beta: float = BETA,
        blocks_per_step: int | None = None,
        student: ResNet | None = None,
        log: str | Path | None = None,
    ):
        if not isinstance(teacher, ResNet):
            raise TypeError(
                f"teacher must be a hls4ml_skiptrim.training.torch.ResNet (use resnet()), got {type(teacher).__name__}"
            )
        self.beta = check_beta(beta)
        src = METHODS[self.method][0]
        if any(m != src for m in teacher.modes):
            raise ValueError(
                f"{type(self).__name__}: the teacher must have '{src}' skips in every block, "
                f"got {teacher.modes}"
            )
        self.schedule = SkipTrimSchedule(len(teacher.blocks), self.method, alpha, blocks_per_step)
        if student is None:
            student = copy.deepcopy(teacher)
        else:
            check_compatible(teacher, student)
        self.teacher = teacher.eval().requires_grad_(False)
        self.student = student.requires_grad_(True)
        self.student.set_modes(self.schedule.modes())
        self.log = JsonLog(
            log,
            meta={
                "method": self.method,
                **self.schedule.config(),
                "beta": self.beta,
                "teacher": {k: teacher.config[k] for k in _ARCH_KEYS},
            },
        )

    def begin_epoch(self, epoch: int) -> list[int]:
        """Algorithm 1 lines 14-17: modify the next block(s) when ``epoch mod α == 0``."""
        new = self.schedule.begin_epoch(int(epoch))
        self.student.set_modes(self.schedule.modes())
        return new

    def loss(self, x, y):
        """Eq 4.4 on a batch; returns ``(loss, student_logits)``."""
        with torch.no_grad():
            t = self.teacher(x)
        s = self.student(x)
        return skiptrim_loss(s, t, y, self.beta), s

    def state_dict(self) -> dict:
        return {
            "schedule": self.schedule.state_dict(),
            "beta": self.beta,
            "student": self.student.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.schedule.load_state_dict(state["schedule"])
        self.student.set_modes(self.schedule.modes())
        self.student.load_state_dict(state["student"])

    def export(self, fold: bool | None = None) -> ResNet:
        """The student for hls4ml: eval mode, BN folded (Eq 4.3) for float models of arrangements a-c."""
        if fold is None:
            fold = self.student.config["quant"] is None and self.student.config["arrangement"] != "d"
        return fold_bn(self.student) if fold else copy.deepcopy(self.student).eval()


class Skipper(SkipTrim):
    """Prune one block's skip every ``α`` (= 1) epochs from the input side (Listing 4.1)."""

    method = "skipper"


class Trimmer(SkipTrim):
    """Split one block's long skip into two short skips every ``α`` (= 3) epochs (Listing 4.2)."""

    method = "trimmer"


class NonResNet(SkipTrim):
    """NonResNet (Weng, Khodamoradi & Kastner): ShortResNet teacher (short skips), remove the skips of 3 blocks every ``α`` epochs."""

    method = "nonresnet"


# ----------------------------------------------------------------------------------------------- training
def _batches(x, y, batch_size, generator=None):
    n = len(x)
    idx = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for i in range(0, n, batch_size):
        j = idx[i : i + batch_size]
        yield x[j], y[j]


def _as_tensors(x, y):
    x = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    y = torch.as_tensor(np.asarray(y), dtype=torch.long)
    if x.ndim != 4 or len(x) != len(y):
        raise ValueError(f"expected x (N, C, H, W) and y (N,), got {tuple(x.shape)} and {tuple(y.shape)}")
    return x, y


@torch.no_grad()
def evaluate(model: nn.Module, x, y, batch_size: int = 512) -> tuple[float, float]:
    """(mean cross-entropy, top-1 accuracy) of a logits model."""
    x, y = _as_tensors(x, y)
    was = model.training
    model.eval()
    loss, correct = 0.0, 0
    for xb, yb in _batches(x, y, batch_size):
        out = model(xb)
        loss += F.cross_entropy(out, yb, reduction="sum").item()
        correct += (out.argmax(1) == yb).sum().item()
    model.train(was)
    return loss / len(x), correct / len(x)


def fit(
    target,
    x,
    y,
    x_val,
    y_val,
    epochs: int,
    lr: float = 1e-3,
    batch_size: int = 64,
    scheduler: str = "aslr",
    seed: int = 0,
    progress: bool = True,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    log: str | Path | None = None,
) -> list[dict]:
    """Train a :class:`ResNet` (cross-entropy: teacher or no-distillation student) or a :class:`SkipTrim`
    (Algorithm 1 + Eq 4.4) for ``epochs`` epochs with Adam and ASLR (default) or a constant LR.

    ``checkpoint``: saved after every epoch (schedule, student, optimiser, ASLR, data-order generator);
    with ``resume=True`` an existing checkpoint is loaded and training continues at the next epoch.
    Returns the per-epoch records (also written to the JSON ``log`` / the SkipTrim's log).
    """
    from tqdm.auto import tqdm

    st = target if isinstance(target, SkipTrim) else None
    model = st.student if st is not None else target
    if not isinstance(model, ResNet):
        raise TypeError(f"fit expects a ResNet or a SkipTrim, got {type(target).__name__}")
    if scheduler not in ("aslr", "constant"):
        raise ValueError(f"scheduler: expected 'aslr' or 'constant', got {scheduler!r}")
    x, y = _as_tensors(x, y)
    gen = torch.Generator().manual_seed(seed)
    from aslr.torch import ASLR, layer_param_groups

    opt = torch.optim.Adam(layer_param_groups(model), lr=lr)
    sched = (
        ASLR(opt, lr, mode="min", generator=torch.Generator().manual_seed(seed + 1))
        if scheduler == "aslr"
        else None
    )
    jlog = st.log if st is not None else JsonLog(log, meta={"model": model.config})
    if st is not None and log is not None:
        jlog.path = Path(log)
    start = 0
    if resume and checkpoint is not None and Path(checkpoint).is_file():
        ck = torch.load(checkpoint, weights_only=False)
        if st is not None:
            st.load_state_dict(ck["skiptrim"])
        else:
            model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        if sched is not None:
            sched.load_state_dict(ck["aslr"])
        gen.set_state(ck["generator"])
        start = ck["epoch"] + 1
    from hwreshape.training import fit_epochs

    records: list[dict] = []

    def on_epoch_start(epoch):
        new = st.begin_epoch(epoch) if st is not None else []
        return {"modified": new, "centre_lr": sched.c if sched is not None else lr}

    def batches(epoch):
        return tqdm(
            list(_batches(x, y, batch_size, gen)), desc=f"epoch {epoch}", disable=not progress, leave=False
        )

    def loss(batch):
        xb, yb = batch
        value = st.loss(xb, yb)[0] if st is not None else F.cross_entropy(model(xb), yb)
        return value, len(xb)

    def validate():
        val_loss, val_acc = evaluate(model, x_val, y_val)
        return {"val_loss": val_loss, "val_accuracy": val_acc}

    def on_epoch_end(epoch, r):
        rec = {
            "epoch": epoch,
            "loss": r["loss"],
            "val_loss": r["val_loss"],
            "val_accuracy": r["val_accuracy"],
            "lr": r["centre_lr"],
            "modes": model.modes,
            "modified": r["modified"],
        }
        records.append(jlog.record(**rec))
        if progress:
            print(
                f"epoch {epoch}: loss {rec['loss']:.4f} val_loss {rec['val_loss']:.4f} "
                f"val_acc {rec['val_accuracy']:.4f}"
                + (f" modified {rec['modified']}" if rec["modified"] else ""),
                flush=True,
            )
        if checkpoint is not None:
            Path(checkpoint).parent.mkdir(parents=True, exist_ok=True)
            torch.save(
                {
                    "epoch": epoch,
                    "optimizer": opt.state_dict(),
                    "generator": gen.get_state(),
                    "aslr": sched.state_dict() if sched is not None else None,
                    **({"skiptrim": st.state_dict()} if st is not None else {"model": model.state_dict()}),
                },
                checkpoint,
            )

    fit_epochs(
        model,
        opt,
        batches,
        loss,
        validate,
        epochs,
        start_epoch=start,
        scheduler=sched,
        monitor="val_loss",
        on_epoch_start=on_epoch_start,
        on_epoch_end=on_epoch_end,
        desc="skiptrim fit",
    )
    return records
