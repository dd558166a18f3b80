"""Tests for llmviz.masks: pinned counts from algorithms.md §1, defining properties, HF cross-checks."""

import pytest
import torch

from llmviz import masks as M


def nnz(m: torch.Tensor) -> int:
    return int(m.sum())


def rows(m: torch.Tensor) -> list[int]:
    return m.sum(1).tolist()


# ---------------------------------------------------------------- pinned counts (algorithms.md §1)
@pytest.mark.parametrize("mask_fn, expected", [
    (lambda: M.causal(1024), 524_800),
    (lambda: M.sliding_window(1024, 256), 229_504),
    (lambda: M.strided(1024, 32, part="local"), 33_264),
    (lambda: M.strided(1024, 32, part="stride"), 16_896),
    (lambda: M.strided(1024, 32), 48_144),
    (lambda: M.fixed(1024, 128, 8, part="block"), 66_048),
    (lambda: M.fixed(1024, 128, 8, part="summary"), 28_960),
    (lambda: M.fixed(1024, 128, 8), 94_720),
    (lambda: M.longformer(1024, 512, [0]), 461_054),
    (lambda: M.bigbird(1024, 64, 0), 409_600),
    (lambda: M.bigbird(1024, 64, 3, 0), 581_632),
    (lambda: M.bigbird(1024, 64, 3, 7), 581_632),
    (lambda: M.document(M.doc_ids_from_lengths([300, 500, 224])), 195_600),
])
def test_pinned_counts(mask_fn, expected):
    m = mask_fn()
    assert m.dtype == torch.bool and m.shape == (1024, 1024)
    assert nnz(m) == expected


def test_density_helpers():
    T = 16
    assert M.density(M.causal(T)) == pytest.approx(T * (T + 1) / 2 / T**2)
    assert M.causal_fraction(M.causal(T)) == pytest.approx(1.0)
    assert M.flops_saved(M.causal(T)) == pytest.approx(0.0)
    sw = M.sliding_window(1024, 256)
    assert M.flops_saved(sw) == pytest.approx(1 - 229_504 / 524_800)
    dense_bidir = torch.ones(T, T, dtype=torch.bool)
    assert M.flops_saved(dense_bidir) == pytest.approx(1 - 2 * T / (T + 1)) and M.flops_saved(dense_bidir) < 0


# ---------------------------------------------------------------- defining properties
@pytest.mark.parametrize("T, W", [(1, 1), (10, 1), (10, 3), (10, 10), (10, 25)])
def test_sliding_window_rows(T, W):
    m = M.sliding_window(T, W)
    assert rows(m) == [min(i + 1, W) for i in range(T)]
    assert not torch.triu(m, 1).any() and m.diagonal().all()
    if W >= T:
        assert torch.equal(m, M.causal(T))


def test_dilated_window():
    m = M.dilated_window(20, 3, 4)
    assert m[19].nonzero().flatten().tolist() == [11, 15, 19]
    assert m[5].nonzero().flatten().tolist() == [1, 5]
    assert torch.equal(M.dilated_window(20, 5, 1), M.sliding_window(20, 5))
    assert m.diagonal().all() and not torch.triu(m, 1).any()


def test_strided_rows():
    T, l = 40, 8
    a1, a2 = M.strided(T, l, part="local"), M.strided(T, l, part="stride")
    assert rows(a1) == [min(i, l) + 1 for i in range(T)]          # paper A(1): l+1 keys incl. self
    assert rows(a2) == [i // l + 1 for i in range(T)]
    assert M.strided(T, l)[37].nonzero().flatten().tolist() == [5, 13, 21, 29, 30, 31, 32, 33, 34, 35, 36, 37]
    assert torch.equal(M.strided(T, l), a1 | a2)


def test_fixed_summary_columns():
    T, l, c = 32, 8, 2
    m = M.fixed(T, l, c)
    summary_cols = [j for j in range(T) if j % l >= l - c]
    for j in summary_cols:                                          # every later query sees a summary cell
        assert m[j:, j].all()
    assert M.fixed(T, l, c, part="summary").any(0).nonzero().flatten().tolist() == summary_cols
    blk = M.fixed(T, l, c, part="block")
    assert rows(blk) == [i % l + 1 for i in range(T)]
    assert torch.equal(M.fixed(T, l, 0), blk)
    assert m.diagonal().all() and not torch.triu(m, 1).any()


def test_longformer_global_and_band():
    T, w, g = 30, 6, [0, 17]
    m = M.longformer(T, w, g)
    assert torch.equal(m, m.T)                                      # bidirectional + symmetric global
    for k in g:
        assert m[k].all() and m[:, k].all()
    band = M.longformer(T, w)
    assert rows(band)[10] == w + 1 and band[10, 7] and band[10, 13] and not band[10, 14]
    mc = M.longformer(T, w, g, causal=True)
    assert torch.equal(mc, m & M.causal(T)) and mc[29, 17] and not mc[5, 17]
    dil = M.longformer(T, 4, dilation=3)
    assert dil[15].nonzero().flatten().tolist() == [9, 12, 15, 18, 21]
    assert torch.equal(M.longformer(T, w, torch.tensor(g)), m)


def test_bigbird_structure_and_seed():
    T, b, r = 512, 32, 2
    nb = T // b
    m = M.bigbird(T, b, r, seed=0)
    blocks = m.view(nb, b, nb, b)[:, 0, :, 0]                       # [nb, nb] block layout
    assert torch.equal(m, blocks.repeat_interleave(b, 0).repeat_interleave(b, 1))
    assert blocks[[0, -1]].all() and blocks[:, [0, -1]].all()       # 2 global blocks (ITC)
    for q in range(1, nb - 1):
        assert blocks[q, q - 1:q + 2].all()                         # 3-block window
        rand = [k for k in range(1, nb - 1) if abs(k - q) > 1 and blocks[q, k]]
        assert len(rand) == r                                       # exactly r random blocks per row
    assert torch.equal(M.bigbird(T, b, r, 0), m)                    # reproducible
    assert not torch.equal(M.bigbird(T, b, r, 1), m)                # another seed, another draw
    assert torch.equal(M.bigbird(T, b, r, 0, causal=True), m & M.causal(T))
    assert torch.equal(M.bigbird(128, 64, 0), torch.ones(128, 128, dtype=torch.bool))


def test_document():
    ids = M.doc_ids_from_lengths([3, 1, 4])
    assert ids.tolist() == [0, 0, 0, 1, 2, 2, 2, 2]
    m = M.document(ids)
    same = ids[:, None] == ids[None, :]
    assert not (m & ~same).any()                                    # no cross-document pair
    assert torch.equal(m, same & M.causal(8))                       # causal inside each document
    assert rows(m) == [1, 2, 3, 1, 1, 2, 3, 4]


def test_lsh_properties():
    torch.manual_seed(0)
    x = torch.randn(96, 16)
    T = 96
    buckets = M.lsh_buckets(x, 8, seed=3)
    assert buckets.shape == (T,) and buckets.min() >= 0 and buckets.max() < 8
    m = M.lsh(x, 8, 8, seed=3)
    same = buckets[:, None] == buckets[None, :]
    assert not (m & ~same).any()                                    # same bucket only
    assert not torch.triu(m, 1).any() and m.diagonal().all()        # causal, self allowed
    assert m.sum(1).min() >= 1                                      # no empty row
    assert torch.equal(M.lsh(x, 8, 8, seed=3), m)                   # deterministic per seed
    assert not torch.equal(M.lsh_buckets(x, 8, seed=4), buckets)
    # chunking: keys come from own chunk or the previous one in sorted (bucket, position) order
    order = torch.argsort(buckets * T + torch.arange(T))
    chunk_of = torch.empty(T, dtype=torch.long)
    chunk_of[order] = torch.arange(T) // 8
    qi, kj = m.nonzero().unbind(1)
    assert ((chunk_of[qi] - chunk_of[kj]) <= 1).all() and ((chunk_of[qi] - chunk_of[kj]) >= 0).all()
    # Reformer self rule: diagonal only where nothing else is available
    ns = M.lsh(x, 8, 8, seed=3, allow_self=False)
    eye = torch.eye(T, dtype=torch.bool)
    assert ns.sum(1).min() >= 1 and torch.equal(ns & ~eye, m & ~eye)
    assert torch.equal(ns.diagonal(), ~(m & ~eye).any(1))
    # HF-style (no same-bucket filter) is a superset
    assert not (m & ~M.lsh(x, 8, 8, seed=3, same_bucket=False)).any()


def test_gpt3_layers():
    layers = M.gpt3_layers(32, 4, 8)
    assert [torch.equal(m, M.causal(32)) for m in layers] == [True, False, True, False]
    assert torch.equal(layers[1], M.sliding_window(32, 8))
    assert torch.equal(M.gpt3_layers(32, 3, 8, first="local")[0], M.sliding_window(32, 8))


# ---------------------------------------------------------------- reachability
def test_reachability_strided_two_hops():
    T, l = 64, 8
    full = M.causal(T)
    s = M.strided(T, l)
    assert not torch.equal(M.reachability(s), full)
    assert torch.equal(M.reachability(s, n_layers=2), full)
    assert M.hops_to_full(s) == 2
    a1, a2 = M.strided(T, l, part="local"), M.strided(T, l, part="stride")
    assert torch.equal(M.reachability([a1, a2]), full)              # alternating components, §5.2(a)
    assert torch.equal(M.reachability([a2, a1]), full)
    assert M.hops_to_full(M.fixed(T, l, 1)) == 2


def test_reachability_window_needs_depth():
    T, W = 64, 8
    sw = M.sliding_window(T, W)
    assert M.hops_to_full(sw) == 9                                  # ceil(63 / 7): W-1 steps back per layer
    assert not torch.equal(M.reachability(sw, 8), M.causal(T))
    assert torch.equal(M.reachability([sw] * 9), M.causal(T))
    assert M.hops_to_full(sw, max_layers=5) is None
    assert M.hops_to_full(M.sliding_window(T, 1)) is None           # self only: never spreads
    assert M.hops_to_full(M.longformer(T, 2)) == T - 1              # bidirectional target: all T² pairs
    assert M.hops_to_full(M.longformer(T, 2, [0])) == 2


# ---------------------------------------------------------------- Hugging Face cross-checks
def test_hf_mask_functions():
    masking_utils = pytest.importorskip("transformers.masking_utils")
    T, W = 40, 6
    i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
    ref = masking_utils.sliding_window_causal_mask_function(W)(0, 0, i, j)
    assert torch.equal(ref, M.sliding_window(T, W))
    lengths = [7, 20, 13]
    pos = torch.cat([torch.arange(n) for n in lengths])[None]
    seq = masking_utils.find_packed_sequence_indices(pos)
    ref_doc = masking_utils.and_masks(masking_utils.causal_mask_function,
                                      masking_utils.packed_sequence_mask_function(seq))(0, 0, i, j)
    assert torch.equal(ref_doc, M.document(M.doc_ids_from_lengths(lengths)))


def test_gpt_neo_local_bias():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.GPTNeoConfig(vocab_size=10, max_position_embeddings=32, hidden_size=8, num_layers=2,
                                    num_heads=2, window_size=4, attention_types=[[["global", "local"], 1]])
    model = transformers.GPTNeoModel(cfg)
    T = 32
    assert torch.equal(model.h[0].attn.attention.bias[0, 0, :T, :T], M.causal(T))
    assert torch.equal(model.h[1].attn.attention.bias[0, 0, :T, :T], M.sliding_window(T, 4))


# ---------------------------------------------------------------- bad input
BAD = [
    (lambda: M.causal(0), r"T=0 .*T must be an integer >= 1"),
    (lambda: M.causal(3.0), r"T=3\.0 .*integer"),
    (lambda: M.sliding_window(8, 0), r"window=0 .*>= 1"),
    (lambda: M.dilated_window(8, 2, 0), r"dilation=0 .*>= 1"),
    (lambda: M.strided(8, 0), r"stride=0 .*>= 1"),
    (lambda: M.strided(8, 2, part="summary"), r"part='summary' .*'local'"),
    (lambda: M.fixed(8, 0, 0), r"block=0 .*>= 1"),
    (lambda: M.fixed(8, 4, 5), r"summary=5 .*<= 4"),
    (lambda: M.fixed(8, 4, -1), r"summary=-1 .*>= 0"),
    (lambda: M.longformer(8, 3), r"window=3 .*even"),
    (lambda: M.longformer(8, 2, [8]), r"global_idx\[0\]=8 .*<= 7"),
    (lambda: M.longformer(8, 2, [-1]), r"global_idx\[0\]=-1 .*>= 0"),
    (lambda: M.bigbird(100, 64, 0), r"block=64 .*multiple"),
    (lambda: M.bigbird(256, 32, -1), r"n_random=-1 .*>= 0"),
    (lambda: M.bigbird(256, 32, 4), r"n_random=4 .*<= T//block - 5 = 3"),
    (lambda: M.document(torch.tensor([0, 1, 0])), r"doc_ids=.*non-decreasing"),
    (lambda: M.document(torch.tensor([0.0, 1.0])), r"doc_ids=torch.float32 .*integer"),
    (lambda: M.document(torch.zeros(2, 2, dtype=torch.long)), r"doc_ids=\(2, 2\) .*1-D"),
    (lambda: M.doc_ids_from_lengths([3, 0]), r"lengths\[1\]=0 .*>= 1"),
    (lambda: M.lsh(torch.randn(8, 4), 3, 2), r"n_buckets=3 .*even"),
    (lambda: M.lsh(torch.randn(8, 4), 0, 2), r"n_buckets=0 .*>= 2"),
    (lambda: M.lsh(torch.randn(8, 4), 4, 0), r"chunk=0 .*>= 1"),
    (lambda: M.lsh(torch.randn(8), 4, 2), r"x=\(8,\) .*\[T, d\]"),
    (lambda: M.lsh_buckets(torch.ones(8, 4, dtype=torch.long), 4), r"x=torch.int64 .*floating"),
    (lambda: M.gpt3_layers(8, 0, 2), r"n_layers=0 .*>= 1"),
    (lambda: M.gpt3_layers(8, 2, 2, first="global"), r"first='global' .*'dense' or 'local'"),
    (lambda: M.density(torch.ones(3, 3)), r"mask=torch.float32 .*bool"),
    (lambda: M.density(torch.ones(3, 4, dtype=torch.bool)), r"mask=\(3, 4\) .*square"),
    (lambda: M.reachability(M.causal(4), n_layers=0), r"n_layers=0 .*>= 1"),
    (lambda: M.reachability([M.causal(4), M.causal(5)]), r"masks_or_mask\[1\]=\(5, 5\) .*one shape"),
    (lambda: M.reachability([M.causal(4)], n_layers=3), r"n_layers=3 .*None"),
    (lambda: M.hops_to_full(M.causal(4), max_layers=0), r"max_layers=0 .*>= 1"),
]


@pytest.mark.parametrize("call, message", BAD)
def test_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()
