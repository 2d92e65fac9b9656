"""``hwreshape demo`` stage "s2n2 snn front-end" (Khodamoradi 2021, §2.3): synthetic AMC → I/Q constellation events →
a tiny quantized S2N2_rf1 trained for a few steps → QONNX export → qonnx exec and FINN python exec (after
``InferLIFLayers``) equal the torch model bit for bit → NIR round trip; and an snnTorch ``Leaky`` net (default
reset by subtraction, max and average pooling) imported with ``from_snntorch`` whose FINN execution equals
snnTorch spike for spike.  Writes ``s2n2_frontend_events.png``."""

from __future__ import annotations

import time

import numpy as np


def run_pipeline(
    *,
    ticks: int = 16,
    bits: int = 3,
    n_per_class_snr: int = 4,
    epochs: int = 1,
    width: float = 0.25,
    seed: int = 0,
    progress: bool = False,
) -> dict:
    """The demo/notebook pipeline; returns the key numbers and the objects (``net``, ``qonnx``, ``spikes``)."""
    import torch

    from finn_s2n2.finn.build import execute_s2n2
    from finn_s2n2.finn.transformation import convert_to_lif
    from finn_s2n2.snn.encoding import iq_to_spikes
    from finn_s2n2.snn.export import execute_qonnx, spikes_to_frames, to_qonnx
    from finn_s2n2.snn.nir import from_nir, to_nir
    from finn_s2n2.training.datasets import synthetic_amc
    from finn_s2n2.training.recipes import train_rf1

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    classes = ["BPSK", "QPSK", "AM-DSB"]
    data = synthetic_amc(n_per_class_snr, snrs=[6, 10, 14, 18], classes=classes, length=ticks, seed=seed)
    res = train_rf1(
        data=data,
        width=width,
        ticks=ticks,
        epochs=epochs,
        batch=8,
        bits=bits,
        quantized=True,
        seed=seed,
        progress=progress,
    )
    net = res.net
    x = torch.from_numpy(iq_to_spikes(data[0][:4], bits))
    with torch.no_grad():
        ref = net(x).numpy()
    model = to_qonnx(net, x)
    q = execute_qonnx(model, x)
    finn = convert_to_lif(model)
    f = execute_s2n2(finn, {finn.graph.input[0].name: spikes_to_frames(x)})[finn.graph.output[0].name]
    imp = from_nir(to_nir(net, tuple(x.shape[2:])), quantized=True)
    with torch.no_grad():
        rt = imp.net(x).numpy()
    return dict(
        val_acc=res.val_acc,
        qonnx_equal=bool(np.array_equal(q, ref)),
        finn_equal=bool(np.array_equal(f.reshape(ref.shape), ref)),
        nir_roundtrip_equal=bool(np.array_equal(rt, ref)),
        lif_mvau_nodes=sum(n.op_type == "LIF_MVAU" for n in finn.graph.node),
        seconds=time.perf_counter() - t0,
        net=net,
        qonnx=model,
        finn=finn,
        spikes=x.numpy(),
        iq=data[0][:4],
        labels=data[1][:4],
        classes=classes,
    )


def snntorch_check(seed: int = 0) -> dict:
    """A small pooled snnTorch conv net (integer weights, snnTorch's default subtract reset) → ``from_snntorch``
    → QONNX → FINN python execution; returns whether torch, FINN and snnTorch spikes are identical."""
    import snntorch as snn
    import torch
    from torch import nn

    from finn_s2n2.finn.build import execute_s2n2
    from finn_s2n2.finn.transformation import convert_to_lif
    from finn_s2n2.snn.export import spikes_to_frames, to_qonnx
    from finn_s2n2.snn.snntorch import from_snntorch, run_snntorch

    g = torch.Generator().manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1, bias=False),
        snn.Leaky(beta=0.5, threshold=2.0, init_hidden=True),
        nn.MaxPool2d(2),
        nn.Conv2d(3, 4, 3, padding=1, bias=False),
        snn.Leaky(beta=0.75, init_hidden=True),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(16, 5, bias=False),
        snn.Leaky(beta=0.5, init_hidden=True),
    )
    with torch.no_grad():
        for m in net:
            if isinstance(m, nn.Conv2d | nn.Linear):
                m.weight.copy_(torch.randint(-2, 4, m.weight.shape, generator=g).float())
    x = (torch.rand(2, 6, 1, 8, 8, generator=g) < 0.4).float()
    ref = run_snntorch(net, x).numpy()
    imp = from_snntorch(net, output_mode="spikes")
    with torch.no_grad():
        ours = imp.net(x).numpy()
    finn = convert_to_lif(to_qonnx(imp.net, x))
    f = execute_s2n2(finn, {finn.graph.input[0].name: spikes_to_frames(x)})[finn.graph.output[0].name]
    return dict(
        snntorch_exact_mapping=imp.exact,
        snntorch_spikes=int(ref.sum()),
        snntorch_equal=bool(np.array_equal(ours, ref) and np.array_equal(f.reshape(ref.shape), ref)),
    )


def plot_events(iq: np.ndarray, spikes: np.ndarray, path, title: str = "") -> None:
    """I/Q samples and the summed constellation events of one example (Fig 2.9/2.10 style)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 3, figsize=(10, 3))
    ax[0].plot(iq[0], label="I")
    ax[0].plot(iq[1], label="Q")
    ax[0].legend()
    ax[0].set_title("I/Q samples")
    ax[0].set_xlabel("sample index")
    ax[0].set_ylabel("amplitude (normalised)")
    ax[1].plot(iq[0], iq[1], ".")
    ax[1].set_title("constellation")
    ax[1].set_xlabel("in-phase I")
    ax[1].set_ylabel("quadrature Q")
    im = ax[2].imshow(spikes.sum(axis=0)[0], origin="lower")
    ax[2].set_title(f"events summed over {spikes.shape[0]} ticks")
    ax[2].set_xlabel("I bin")
    ax[2].set_ylabel("Q bin")
    fig.colorbar(im, ax=ax[2], label="events per bin")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def stage(ctx) -> dict:
    """Demo stage: tiny pipeline (≤ 60 s on 2 cores), plot of the events, key numbers."""
    r = run_pipeline(epochs=1)
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    plot_events(
        r["iq"][0],
        r["spikes"][0],
        ctx.out_dir / "s2n2_frontend_events.png",
        f"class {r['classes'][r['labels'][0]]}",
    )
    if not (r["qonnx_equal"] and r["finn_equal"] and r["nir_roundtrip_equal"]):
        raise RuntimeError(f"s2n2 front-end: torch/qonnx/FINN/NIR outputs differ: {r}")
    sn = snntorch_check()
    if not sn["snntorch_equal"]:
        raise RuntimeError(f"s2n2 front-end: snnTorch import differs from snnTorch: {sn}")
    keys = ("val_acc", "qonnx_equal", "finn_equal", "nir_roundtrip_equal", "lif_mvau_nodes", "seconds")
    return {**{k: r[k] for k in keys}, **sn}
