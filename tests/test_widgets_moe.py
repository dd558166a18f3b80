"""MoE router explorer (llmviz.widgets.moe): the training it shows, the numbers it prints, every control."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.text import Text

from llmviz.layers.moe import capacity_drops, global_batch_balancing_loss, load_balancing_loss, max_violation
from llmviz.widgets import moe as M
from llmviz.widgets.figure import FigureWidget


def _fast(w: FigureWidget) -> FigureWidget:
    """Render later redraws at a low resolution: the same code path, a fraction of the PNG cost."""
    w.dpi = 30
    return w


# ----------------------------------------------------------------------------------------------- the training

@pytest.mark.parametrize("method", ["aux", "global", "aux_free"])
@pytest.mark.parametrize("experts,top_k,skew", [(8, 2, 1.5), (16, 4, 3.0)])
def test_balancing_improves_max_violation(method, experts, top_k, skew):
    h = M.train_router(experts, top_k, 256, skew, method, steps=20)
    assert h.max_vio[-1] < 0.5 * h.max_vio[0]
    assert h.max_vio[-1] < 1.0


def test_none_with_high_skew_stays_imbalanced():
    h = M.train_router(8, 2, 256, 3.0, "none", steps=20)
    ceiling = 8 / 2 - 1                                  # MaxVio when every token goes to the same k experts
    assert h.max_vio[0] > 0.9 * ceiling and h.max_vio[-1] >= h.max_vio[0] - 1e-6
    assert h.aux_loss[-1] > 2 * 2                        # far from k = 2
    # even an unskewed router collapses without balancing (rich get richer)
    h0 = M.train_router(8, 2, 256, 0.0, "none", steps=20)
    assert h0.max_vio[-1] > 2 * h0.max_vio[0]


def test_global_batch_loss_lets_domains_specialise():
    micro, glob = (M.train_router(16, 4, 256, 1.5, m) for m in ("aux", "global"))
    assert glob.max_vio[-1] < 1.0 and micro.max_vio[-1] < 1.0                 # both balance the whole batch
    assert glob.micro_max_vio[-1] > micro.micro_max_vio[-1] + 0.5             # only one balances each domain


def test_aux_free_bias_pushes_against_the_skew():
    h = M.train_router(8, 2, 256, 3.0, "aux_free", gamma=0.03, steps=20)
    assert h.bias[0] < 0 < h.bias[-1]              # expert 0 was favoured, expert E-1 starved
    assert np.all(np.abs(h.bias) <= 0.03 * 20 + 1e-6)
    assert not M.train_router(8, 2, 256, 3.0, "aux").bias.any()


def test_balance_coefficient_and_gamma_matter():
    weak, strong = (M.train_router(8, 2, 256, 1.5, "aux", coef=c).max_vio[-1] for c in (0.001, 0.3))
    assert strong < 0.5 < 2.0 < weak
    slow, fast = (M.train_router(8, 2, 256, 1.5, "aux_free", gamma=g).max_vio[-1] for g in (0.001, 0.03))
    assert fast < 0.5 < 2.0 < slow                    # γ = 0.001 moves b by only 0.02 in 20 steps


def test_vectorised_losses_equal_the_library_functions():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 8, generator=g) * 2
    e, k, m = 8, 2, 4
    probs = logits.softmax(-1)
    idx = torch.topk(probs, k)[1]
    counts = torch.stack([torch.bincount(i.reshape(-1), minlength=e) for i in idx.chunk(m)]).float()
    micro = torch.stack([load_balancing_loss((c,), e, k) for c in logits.chunk(m)]).mean()
    torch.testing.assert_close(M._micro_batch_aux(probs, counts), micro)
    torch.testing.assert_close(M._global_batch_aux(probs, counts),
                               global_batch_balancing_loss(list(logits.chunk(m)), e, k))
    torch.testing.assert_close(M._global_batch_aux(probs, counts.sum(0, keepdim=True)),
                               load_balancing_loss((logits,), e, k))


def test_recorded_aux_loss_is_hf_loss_of_the_initial_router():
    e, k, tokens, skew = 8, 2, 256, 1.5
    h = M.train_router(e, k, tokens, skew, "aux", steps=10)
    gen = torch.Generator().manual_seed(0)
    xs, common = M._data(gen, 11, tokens)
    w0 = M._initial_weight(gen, e, common, skew)
    logits = xs[0] @ w0.T
    assert h.aux_loss[0] == pytest.approx(float(load_balancing_loss((logits,), e, k)), abs=1e-5)
    idx = torch.topk(logits.softmax(-1), k)[1]
    assert np.array_equal(h.load[0], np.bincount(idx.reshape(-1).numpy(), minlength=e))
    assert np.allclose(h.max_vio, max_violation(torch.tensor(h.load)).numpy())


def test_deterministic_for_a_seed():
    args = (8, 2, 128, 1.5, "aux_free")
    a = M.train_router(*args, seed=3)
    M._train_cached.cache_clear()
    b = M.train_router(*args, seed=3)
    assert a is not b
    for name in ("load", "micro_load", "aux_loss", "max_vio", "final_indices", "bias"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert not np.array_equal(M.train_router(*args, seed=4).load, a.load)


def test_training_is_cached_on_what_it_depends_on():
    M._train_cached.cache_clear()
    M.train_router(8, 2, 256, 1.5, "none", coef=0.1, gamma=0.01)
    M.train_router(8, 2, 256, 1.5, "none", coef=1.0, gamma=0.1)     # coef and gamma unused: no new run
    M.train_router(8, 2, 256, 1.5, "aux", coef=0.1, gamma=0.1)
    M.train_router(8, 2, 256, 1.5, "aux", coef=0.1, gamma=0.003)    # gamma unused by aux
    assert M._train_cached.cache_info().misses == 2


def test_default_training_is_fast():
    import time
    times = []
    for _ in range(3):
        M._train_cached.cache_clear()
        start = time.perf_counter()
        M.train_router()
        times.append(time.perf_counter() - start)
    assert min(times) < 0.5                            # ~10-20 ms; generous for a shared CI machine


def test_largest_offered_training_is_fast_and_leaves_torch_threads_alone():
    import time
    threads = torch.get_num_threads()
    largest = dict(num_experts=max(M.EXPERTS), top_k=max(M.TOP_K), tokens=max(M.TOKENS), steps=max(M.STEPS))
    times = []
    for method in ("aux", "aux_free"):
        M._train_cached.cache_clear()
        start = time.process_time()                    # CPU time: steady on a shared machine
        M.train_router(method=method, **largest)
        times.append(time.process_time() - start)
    assert torch.get_num_threads() == threads
    assert min(times) < 0.25                           # ~40-60 ms of CPU; the explorer's redraw budget is 0.1 s


# -------------------------------------------------------------------------------------------------- the figure

def _texts(fig) -> str:
    return "\n".join(t.get_text() for t in fig.findobj(Text))


def test_numbers_on_the_figure_are_the_computed_ones():
    w = _fast(M.moe_router_explorer(method="aux", capacity_factor=1.0))
    v = w.values
    h = M.train_router(v["experts"], v["top_k"], v["tokens"], v["skew"], v["method"], v["coef"], v["gamma"],
                       v["steps"], v["seed"])
    text = _texts(w.fig)
    before = float(max_violation(torch.tensor(h.load[0])))
    after = float(max_violation(torch.tensor(h.load[-1])))
    assert f"MaxVio {before:.2f} → {after:.2f}" in text
    drops = capacity_drops(torch.tensor(h.final_indices), v["experts"], 1.0)
    assert drops.capacity == v["tokens"] * v["top_k"] // v["experts"]
    n = v["tokens"] * v["top_k"]
    assert f"{drops.total} of {n} assignments dropped ({100 * drops.total / n:.1f}%)" in text
    assert f"capacity = {drops.capacity}" in text
    assert f"{h.aux_loss[0]:.2f} → {h.aux_loss[-1]:.2f}" in text
    assert f"k = {v['top_k']} = perfect balance" in text
    assert f"{v['top_k']} routed + 0 shared = {v['top_k']} of {v['experts']} experts" in text
    assert f"MaxVio within a micro-batch {h.micro_max_vio[-1]:.2f}" in text
    w.controls["shared_experts"].value = 2
    assert f"{v['top_k']} routed + 2 shared = {v['top_k'] + 2} of {v['experts'] + 2} experts" in _texts(w.fig)


def test_opens_without_balancing_and_without_a_capacity_limit():
    """Review point 9: Qwen3 (and DeepSeek-V3) drop no tokens, so the explorer opens dropless, and its first
    picture is the collapse without balancing; the per-domain panel is labelled."""
    w = _fast(M.moe_router_explorer())
    assert (w.values["method"], w.values["capacity_factor"]) == ("none", M.DROPLESS)
    assert w.controls["capacity_factor"].label == "no limit"
    text = _texts(w.fig)
    assert "No balancing: routing collapses onto a few experts" in text
    assert "no capacity limit (as Qwen3): 0 dropped" in text and "assignments dropped" not in text
    assert "Final load\nper domain" in text and "domain" in text.split("\n")
    assert [t.get_text() for t in w.fig.axes[1].get_xticklabels()] == ["1", "2", "3", "4"]
    h = M.train_router(method="none")
    assert h.max_vio[-1] > h.max_vio[0] > 1                                    # it collapses further
    s = M.summary(h, M.DROPLESS, 0)
    assert (s["capacity"], s["dropped"]) == (None, 0)
    w.controls["capacity_factor"].value = 1.25                                # a Switch-style limit drops
    assert "capacity = 80 (orange)" in _texts(w.fig)
    assert M.summary(h, 1.25, 0)["dropped"] > 0


def _offered(control) -> list:
    """All options of a dropdown; first and last of a selection slider; min and max of a numeric slider."""
    if hasattr(control, "options"):
        values = [o[1] if isinstance(o, tuple) else o for o in control.options]
        return values if control.__class__.__name__ == "Dropdown" else [values[0], values[-1]]
    return [control.min, control.max]


def test_every_control_redraws_through_its_offered_values():
    w = _fast(M.moe_router_explorer(tokens=64, steps=10))      # small training and PNG: a quick sweep
    assert isinstance(w, FigureWidget) and repr(w).startswith("moe_router_explorer(")
    order = ["method", "gamma", "coef", "top_k", "experts", "tokens", "skew", "shared_experts",
             "capacity_factor", "steps", "seed"]
    assert sorted(order) == sorted(w.controls)
    needs = {"coef": "aux", "gamma": "aux_free"}            # each strength only matters for its methods
    for name in order:
        control = w.controls[name]
        if name in needs:
            w.controls["method"].value = needs[name]
        for value in _offered(control):
            if control.value == value:
                continue
            png = w.image.value
            control.value = value
            assert control.value == value
            assert w.image.value != png, (name, value)
            assert w.image.value[:8] == b"\x89PNG\r\n\x1a\n"
            if name == "experts":   # only k < E is offered; top_k ended on 6, so E = 4 forces k = 3, then kept
                top_k = w.controls["top_k"]
                assert list(top_k.options) == [k for k in (1, 2, 3, 4, 6, 8) if k < value] and top_k.value == 3
        if name == "method":                                  # the unused strength control is greyed out
            assert w.controls["coef"].disabled and not w.controls["gamma"].disabled      # ends on aux_free
        if name in needs:
            assert not control.disabled and w.controls["gamma" if name == "coef" else "coef"].disabled
        if name == "tokens":
            control.value = control.options[0]                # keep the remaining sweeps quick


def test_a_used_figure_draws_the_same_png_as_a_fresh_one():
    """draw_moe keeps its artists on the figure and updates them: the result must not depend on what the
    figure showed before."""
    from matplotlib.figure import Figure
    from llmviz.widgets.figure import figure_png
    target = dict(method="aux_free", experts=16, top_k=4, tokens=64, steps=10, capacity_factor=0.75)
    used = Figure()
    for before in (dict(method="none", experts=4, top_k=1, tokens=128, steps=20, shared_experts=2), target,
                   dict(method="global", experts=64, top_k=8, tokens=64, steps=10)):
        M.draw_moe(used, **before)
    M.draw_moe(used, **target)
    fresh = Figure()
    M.draw_moe(fresh, **target)
    assert len(used.axes) == len(fresh.axes) == 3
    assert figure_png(used, dpi=30) == figure_png(fresh, dpi=30)
    used.clear()                                       # FigureWidget's plain redraw clears: drawn anew
    M.draw_moe(used, **target)
    assert figure_png(used, dpi=30) == figure_png(fresh, dpi=30)


def test_same_values_give_the_same_png():
    from matplotlib.figure import Figure
    from llmviz.widgets.figure import figure_png
    pngs = []
    for _ in range(2):
        M._train_cached.cache_clear()
        fig = Figure(figsize=(14, 8))
        M.draw_moe(fig, method="global", tokens=64, steps=10, seed=5)
        pngs.append(figure_png(fig, dpi=30))
    assert pngs[0] == pngs[1]


# ------------------------------------------------------------------------------------------------- bad inputs

@pytest.mark.parametrize("kwargs,pattern", [
    (dict(top_k=8), r"top_k=8 is not allowed: must be one of \[1, 2, 3, 4, 6\] for experts=8"),
    (dict(experts=5), r"experts=5 is not allowed"),
    (dict(capacity_factor=0.0), r"capacity_factor=0.0 is not allowed"),
    (dict(method="switch"), r"method='switch' is not allowed: must be one of"),
    (dict(gamma=-0.1), r"gamma=-0.1 is not allowed"),
    (dict(tokens=100), r"tokens=100 is not allowed"),
    (dict(skew=5), r"skew=5 is not allowed: must be a number in \[0, 3\]"),
    (dict(colour="red"), r"initial=\['colour'\] is not allowed: unknown control"),
])
def test_explorer_rejects_bad_initial_values(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        M.moe_router_explorer(**kwargs)


@pytest.mark.parametrize("kwargs,pattern", [
    (dict(num_experts=8, top_k=8), r"top_k=8 is not allowed: must be < num_experts=8"),
    (dict(tokens=30), r"tokens=30 is not allowed: must split into 4"),
    (dict(method="aux", coef=-1), r"coef=-1 is not allowed"),
    (dict(method="aux_free", gamma=-0.5), r"gamma=-0.5 is not allowed"),
    (dict(method="lbl"), r"method='lbl' is not allowed"),
])
def test_train_router_rejects_bad_arguments(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        M.train_router(**kwargs)


def test_draw_rejects_bad_capacity_factor():
    from matplotlib.figure import Figure
    with pytest.raises(ValueError, match=r"capacity_factor=-1.0 is not allowed"):
        M.draw_moe(Figure(), capacity_factor=-1.0, tokens=64, steps=10)
