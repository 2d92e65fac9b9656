"""aslr.lightning.ASLRCallback in a real lightning.pytorch Trainer: per-step draws in the Eq 5.10 interval,
Algorithm 2 on the logged val_loss, epochs without validation skipped, checkpoint resume identical, bad input."""

import lightning.pytorch as pl
import numpy as np
import pytest
import torch

from aslr.core import ASLRSearch
from aslr.lightning import ASLRCallback
from aslr.torch import layer_param_groups
from hwreshape.data import load_digits

torch.set_num_threads(1)


class Net(pl.LightningModule):
    def __init__(self, with_scheduler=False):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(
            torch.nn.Flatten(), torch.nn.Linear(64, 24), torch.nn.ReLU(), torch.nn.Linear(24, 10)
        )
        self.val_losses, self.val_accs, self.seen_lrs, self.with_scheduler = [], [], [], with_scheduler

    def training_step(self, batch, _):
        x, y = batch
        return torch.nn.functional.cross_entropy(self.net(x), y)

    def on_train_batch_end(self, *args):
        self.seen_lrs.append([g["lr"] for g in self.trainer.optimizers[0].param_groups])

    def validation_step(self, batch, _):
        x, y = batch
        logits = self.net(x)
        self.log("val_loss", torch.nn.functional.cross_entropy(logits, y), on_epoch=True, prog_bar=False)
        self.log("val_acc", (logits.argmax(1) == y).float().mean(), on_epoch=True, prog_bar=False)

    def on_validation_epoch_end(self):
        if not self.trainer.sanity_checking:
            self.val_losses.append(float(self.trainer.callback_metrics["val_loss"]))
            self.val_accs.append(float(self.trainer.callback_metrics["val_acc"]))

    def configure_optimizers(self):
        opt = torch.optim.SGD(layer_param_groups(self.net, momentum=0.9), lr=1.0)
        if self.with_scheduler:
            return [opt], [torch.optim.lr_scheduler.StepLR(opt, 1)]
        return opt


@pytest.fixture(scope="module")
def loaders():
    x, y = load_digits()
    ds_tr = torch.utils.data.TensorDataset(torch.from_numpy(x[:512]), torch.from_numpy(y[:512]))
    ds_va = torch.utils.data.TensorDataset(torch.from_numpy(x[1500:1700]), torch.from_numpy(y[1500:1700]))
    return (
        torch.utils.data.DataLoader(ds_tr, batch_size=64, shuffle=False),
        torch.utils.data.DataLoader(ds_va, batch_size=200),
    )


def _trainer(tmp_path, epochs, cb, **kw):
    return pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        callbacks=[cb],
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        num_sanity_val_steps=1,
        **kw,
    )


def test_lightning_callback_draws_per_step_and_follows_algorithm_2(tmp_path, loaders):
    model = Net()
    cb = ASLRCallback(0.3, monitor="val_loss", seed=0)
    _trainer(tmp_path, 5, cb, enable_checkpointing=False).fit(model, *loaders)
    ref = ASLRSearch(0.3)
    expected = [0.3] + [ref.observe(v) for v in model.val_losses]
    assert len(model.val_losses) == 5
    assert cb.c_history == expected
    assert len(model.seen_lrs) == 5 * 8
    # each step's rates lie in the interval of that epoch's centre, one distinct rate per layer
    for step, lrs in enumerate(model.seen_lrs):
        search = ASLRSearch(expected[step // 8])
        lo, hi = search.bounds
        assert len(lrs) == 2 and lrs[0] != lrs[1]
        assert all(lo <= r <= hi for r in lrs)
    assert len({tuple(r) for r in model.seen_lrs}) == len(model.seen_lrs)


def test_epochs_without_validation_are_not_observed(tmp_path, loaders):
    model = Net()
    cb = ASLRCallback(0.3, monitor="val_loss", seed=0)
    _trainer(tmp_path, 4, cb, enable_checkpointing=False, check_val_every_n_epoch=2).fit(model, *loaders)
    assert len(model.val_losses) == 2
    ref = ASLRSearch(0.3)
    assert cb.c_history == [0.3] + [ref.observe(v) for v in model.val_losses]


def test_checkpoint_resume_continues_identically(tmp_path, loaders):
    full = Net()
    cb_full = ASLRCallback(0.3, seed=4)
    _trainer(tmp_path / "a", 4, cb_full, enable_checkpointing=False).fit(full, *loaders)

    first = Net()
    cb1 = ASLRCallback(0.3, seed=4)
    t1 = _trainer(tmp_path / "b", 2, cb1, enable_checkpointing=False)
    t1.fit(first, *loaders)
    ckpt = tmp_path / "mid.ckpt"
    t1.save_checkpoint(ckpt)
    second = Net()
    cb2 = ASLRCallback(0.3, seed=99)  # the checkpoint's generator state must win
    _trainer(tmp_path / "c", 4, cb2, enable_checkpointing=False).fit(second, *loaders, ckpt_path=str(ckpt))
    assert cb2.c_history == cb_full.c_history
    assert second.seen_lrs == full.seen_lrs[len(first.seen_lrs) :]
    for p_full, p_resumed in zip(full.parameters(), second.parameters()):
        torch.testing.assert_close(p_full, p_resumed, rtol=0, atol=1e-6)


def test_bad_input(tmp_path, loaders):
    with pytest.raises(ValueError, match="lr"):
        ASLRCallback(-0.1)
    with pytest.raises(ValueError, match="mode"):
        ASLRCallback(0.1, mode="up")
    with pytest.raises(TypeError, match="monitor"):
        ASLRCallback(0.1, monitor=None)
    with pytest.raises(ValueError, match="lr scheduler"):
        _trainer(tmp_path, 1, ASLRCallback(0.1), enable_checkpointing=False).fit(
            Net(with_scheduler=True), *loaders
        )
    with pytest.raises(ValueError, match="val_f1"):
        _trainer(tmp_path, 1, ASLRCallback(0.1, monitor="val_f1"), enable_checkpointing=False).fit(
            Net(), *loaders
        )


def test_default_monitor_is_the_validation_error(tmp_path, loaders):
    model = Net()
    cb = ASLRCallback(0.3, seed=0)
    assert cb.monitor == "val_acc" and cb.mode == "max"
    assert ASLRCallback(0.3, monitor="val_loss").mode == "min"
    _trainer(tmp_path, 3, cb, enable_checkpointing=False).fit(model, *loaders)
    ref = ASLRSearch(0.3, mode="max")
    assert cb.c_history == [0.3] + [ref.observe(v) for v in model.val_accs]


def test_second_fit_continues_the_search(tmp_path, loaders):
    full = Net()
    cb_full = ASLRCallback(0.3, monitor="val_loss", seed=5)
    _trainer(tmp_path / "a", 4, cb_full, enable_checkpointing=False).fit(full, *loaders)

    model = Net()
    cb = ASLRCallback(0.3, monitor="val_loss", seed=5)
    trainer = _trainer(tmp_path / "b", 2, cb, enable_checkpointing=False)
    trainer.fit(model, *loaders)
    first = list(cb.c_history)
    trainer.fit_loop.max_epochs = 4
    trainer.fit(model, *loaders)  # the same callback: continue, do not restart at c = 0.3 with fresh draws
    assert cb.scheduler.search.epochs == 4
    assert cb.c_history[:3] == first and len(cb.c_history) == 5
    ref = ASLRSearch(0.3)
    assert cb.c_history == [0.3] + [ref.observe(v) for v in model.val_losses]
    # the draws continue the generator: the first step of the second fit equals step 17 of one 4-epoch fit
    assert model.seen_lrs[16] == full.seen_lrs[16]
    assert model.seen_lrs[:16] == full.seen_lrs[:16]


def test_resumed_checkpoint_of_another_start_lr_is_refused(tmp_path, loaders):
    t1 = _trainer(tmp_path / "a", 1, ASLRCallback(0.3, monitor="val_loss"), enable_checkpointing=False)
    t1.fit(Net(), *loaders)
    ckpt = tmp_path / "a.ckpt"
    t1.save_checkpoint(ckpt)
    t2 = _trainer(tmp_path / "b", 2, ASLRCallback(0.03, monitor="val_loss"), enable_checkpointing=False)
    with pytest.raises(ValueError, match="started at lr=0.3"):
        t2.fit(Net(), *loaders, ckpt_path=str(ckpt))


def test_lightning_range_test_and_preflight(tmp_path, loaders):
    from aslr.lightning import lr_range_test
    from aslr.lr_finder import StartLRWarning

    model = Net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = pl.Trainer(
        max_epochs=5,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=tmp_path,
    )
    r = lr_range_test(trainer, model, loaders[0], start_lr=1e-4, end_lr=10.0, num_iter=40)
    assert 1e-4 <= r.low < r.suggestion < r.high <= 10.0
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # Lightning restores the module
    with pytest.raises(ValueError, match="above"):
        ASLRCallback(10 * r.high, preflight=r, preflight_action="raise")
    with pytest.warns(StartLRWarning, match="below"):
        ASLRCallback(r.low / 10, preflight=r)
    with pytest.raises(ValueError, match="num_iter"):
        lr_range_test(trainer, model, loaders[0], num_iter=1)


@pytest.mark.parametrize("step0", [0, 7])
def test_unbias_undoes_lightnings_step_offset(step0):
    from aslr.lightning import _unbias

    beta, raw = 0.98, [2.3, 2.1, 2.2, 1.9, 1.7, 2.5]
    avg, logged, expected = 0.0, [], []
    for k, loss in enumerate(raw):  # Lightning's _LRCallback: global_step already counts this step
        avg = beta * avg + (1 - beta) * loss
        logged.append(avg / (1 - beta ** (step0 + k + 1 + 1)))
        expected.append(avg / (1 - beta ** (k + 1)))
    np.testing.assert_allclose(_unbias(logged, step0), expected, rtol=1e-12)
    assert _unbias(logged, step0)[0] == pytest.approx(raw[0])
