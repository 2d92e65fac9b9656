"""SkipTrim for PyTorch/Brevitas: block switches (Listings 4.1/4.2), Eq 4.4 loss, Algorithm 1 via fit, resume,
BN folding (Eq 4.3), bad input, and the exported student through hls4ml C-simulation."""

import copy

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hls4ml_skiptrim.training import torch as stt
from hls4ml_skiptrim.training.schedule import distillation_loss
from hwreshape.data import load_digits, split

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits()
    return split(x, y, 1000, seed=0)


@pytest.mark.parametrize("arrangement", list("abcd"))
def test_block_switches_change_graph(arrangement):
    kw = dict(input_shape=(1, 8, 8), width=8, arrangement=arrangement)
    assert stt.count_adds(stt.resnet(8, "long", **kw)) == 3
    assert stt.count_adds(stt.resnet(8, "none", **kw)) == 0  # Listing 4.1: skip-free graph has no add
    assert stt.count_adds(stt.resnet(8, "short", **kw)) == 6  # Listing 4.2: two adds per trimmed block
    m = stt.resnet(20, ["none", "short", "long"] * 3, **kw)
    assert stt.count_adds(m) == 3 * (0 + 2 + 1)
    m.set_modes("none")
    assert stt.count_adds(m) == 0 and m.modes == ["none"] * 9


def test_quantized_brevitas_graphs():
    for q in ("<8,3>", (16, 4)):
        m = stt.resnet(8, "short", quant=q, input_shape=(1, 8, 8), width=8)
        assert stt.count_adds(m) == 6
        assert type(m.blocks[0].conv1).__module__.startswith("brevitas")
        assert m.blocks[0].conv1.weight_quant.bit_width().item() == parse_w(q)
        assert m(torch.rand(2, 1, 8, 8)).shape == (2, 10)


def parse_w(q):
    return int(str(q).strip("<>()").split(",")[0])


def test_listing_semantics():
    torch.manual_seed(0)
    m = stt.resnet(8, "long", input_shape=(1, 8, 8), width=8).eval()
    b = m.blocks[0]
    x = torch.randn(3, 8, 8, 8)
    u1 = lambda t: torch.relu(b.bn1(b.conv1(t)))  # noqa: E731  (Conv+BN/Act unit, Fig 4.3.b)
    u2 = lambda t: torch.relu(b.bn2(b.conv2(t)))  # noqa: E731
    with torch.no_grad():
        torch.testing.assert_close(b(x), u2(u1(x)) + x)
        b.skip = "none"
        torch.testing.assert_close(b(x), u2(u1(x)))
        b.skip = "short"
        y1 = u1(x) + x
        torch.testing.assert_close(b(x), u2(y1) + y1)
    with pytest.raises(ValueError, match="ResBlock.skip"):
        b.skip = "medium"


def test_loss_equals_eq44_on_fixed_tensors():
    g = torch.Generator().manual_seed(3)
    s, t = (
        torch.randn(5, 10, generator=g, dtype=torch.float64),
        torch.randn(5, 10, generator=g, dtype=torch.float64),
    )
    y = torch.tensor([0, 1, 9, 4, 4])
    for beta in (0.0, 0.35, 1.0):
        got = stt.skiptrim_loss(s, t, y, beta).item()
        assert got == pytest.approx(distillation_loss(s.numpy(), t.numpy(), y.numpy(), beta), rel=1e-12)
    with pytest.raises(ValueError, match="beta"):
        stt.skiptrim_loss(s, t, y, 2.0)


def test_skipper_fit_schedule_and_resume(digits, tmp_path):
    xtr, ytr, xte, yte = digits
    torch.manual_seed(0)
    teacher = stt.resnet(8, input_shape=(1, 8, 8), width=8)
    stt.fit(teacher, xtr, ytr, xte, yte, epochs=1, progress=False, seed=0)
    t_before = copy.deepcopy(teacher.state_dict())

    full = stt.Trimmer(copy.deepcopy(teacher), alpha=1, log=tmp_path / "full.json")
    rec = stt.fit(full, xtr, ytr, xte, yte, epochs=3, progress=False, seed=5)
    assert [r["modified"] for r in rec] == [[0], [1], [2]]
    assert [r["modes"] for r in rec][0] == ["short", "long", "long"]

    ck = tmp_path / "ck.pt"
    part = stt.Trimmer(copy.deepcopy(teacher), alpha=1)
    stt.fit(part, xtr, ytr, xte, yte, epochs=2, progress=False, seed=5, checkpoint=ck)
    resumed = stt.Trimmer(copy.deepcopy(teacher), alpha=1)  # a fresh process: state only from the checkpoint
    rec2 = stt.fit(resumed, xtr, ytr, xte, yte, epochs=3, progress=False, seed=5, checkpoint=ck, resume=True)
    assert [r["epoch"] for r in rec2] == [2] and rec2[0]["modified"] == [2]
    assert resumed.schedule.state_dict() == full.schedule.state_dict()
    for k, v in full.student.state_dict().items():
        torch.testing.assert_close(resumed.student.state_dict()[k], v, rtol=0, atol=0)
    # the teacher stays frozen
    for k, v in teacher.state_dict().items():
        torch.testing.assert_close(v, t_before[k], rtol=0, atol=0)
    assert all(not p.requires_grad for p in full.teacher.parameters())


@settings(max_examples=12)
@given(
    arrangement=st.sampled_from("abc"),
    modes=st.lists(st.sampled_from(["long", "short", "none"]), min_size=3, max_size=3),
    seed=st.integers(0, 1000),
)
def test_fold_bn_eq43_preserves_function(arrangement, modes, seed):
    torch.manual_seed(seed)
    m = stt.resnet(8, modes, input_shape=(2, 8, 8), width=8, arrangement=arrangement)
    with torch.no_grad():  # non-trivial BN statistics
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 2.0)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.3, 0.3)
    m.eval()
    f = stt.fold_bn(m)
    assert not any(isinstance(mod, torch.nn.BatchNorm2d) for mod in f.modules())
    x = torch.randn(4, 2, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(f(x), m(x), rtol=1e-4, atol=1e-4)


def test_bad_input():
    t = stt.resnet(8, input_shape=(1, 8, 8), width=8)
    with pytest.raises(ValueError, match="alpha must be >= 1"):
        stt.Skipper(t, alpha=0)
    with pytest.raises(ValueError, match="beta must be in"):
        stt.Trimmer(t, beta=1.5)
    with pytest.raises(ValueError, match="architecture mismatch: width"):
        stt.Skipper(t, student=stt.resnet(8, input_shape=(1, 8, 8), width=16))
    with pytest.raises(ValueError, match="architecture mismatch: depth"):
        stt.Skipper(t, student=stt.resnet(20, input_shape=(1, 8, 8), width=8))
    with pytest.raises(ValueError, match="'short' skips"):
        stt.NonResNet(t)  # NonResNet needs a ShortResNet teacher
    with pytest.raises(TypeError, match="ResNet"):
        stt.Skipper(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="6k\\+2"):
        stt.resnet(10)
    with pytest.raises(ValueError, match="skips"):
        stt.resnet(8, "medium")
    with pytest.raises(ValueError, match="arrangement"):
        stt.resnet(8, arrangement="e")
    with pytest.raises(ValueError, match="input_shape"):
        stt.resnet(8, input_shape=(8, 8))
    with pytest.raises(ValueError, match="arrangement 'd'"):
        stt.fold_bn(stt.resnet(8, arrangement="d"))
    with pytest.raises(ValueError, match="Brevitas"):
        stt.fold_bn(stt.resnet(8, quant="<8,3>"))
    with pytest.raises(ValueError, match="expected x"):
        stt.fit(t, np.zeros((4, 8, 8)), np.zeros(4), np.zeros((4, 1, 8, 8)), np.zeros(4), epochs=1)


def test_nonresnet_three_blocks_per_step(digits):
    xtr, ytr, xte, yte = digits
    torch.manual_seed(1)
    short = stt.resnet(20, "short", input_shape=(1, 8, 8), width=8)
    nr = stt.NonResNet(short)
    rec = stt.fit(
        nr, xtr[:200], ytr[:200], xte[:100], yte[:100], epochs=3, progress=False, scheduler="constant"
    )
    assert [r["modified"] for r in rec] == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert stt.count_adds(nr.export()) == 0


@pytest.mark.slow
def test_exported_student_hls4ml_csim(digits, tmp_path):
    """Skip-free (Skipper) student, BN folded, through hls4ml's PyTorch frontend: C-sim ≈ torch."""
    import hls4ml

    xtr, ytr, xte, yte = digits
    torch.manual_seed(0)
    teacher = stt.resnet(8, input_shape=(1, 8, 8), width=8)
    stt.fit(teacher, xtr, ytr, xte, yte, epochs=1, progress=False)
    sk = stt.Skipper(teacher)
    stt.fit(sk, xtr, ytr, xte, yte, epochs=3, progress=False)
    exported = sk.export()
    assert stt.count_adds(exported) == 0
    cfg = hls4ml.utils.config_from_pytorch_model(
        exported, input_shape=(1, 8, 8), granularity="model", default_precision="fixed<32,16>"
    )
    hm = hls4ml.converters.convert_from_pytorch_model(
        exported, hls_config=cfg, output_dir=str(tmp_path / "prj"), io_type="io_parallel", backend="Vivado"
    )
    hm.compile()
    x = np.ascontiguousarray(xte[:64].astype(np.float32))
    with torch.no_grad():
        ref = exported(torch.from_numpy(x)).numpy()
    got = np.asarray(hm.predict(np.ascontiguousarray(x.transpose(0, 2, 3, 1)))).reshape(ref.shape)
    assert np.max(np.abs(got - ref)) < 0.05
    assert np.mean(got.argmax(1) == ref.argmax(1)) >= 0.95
