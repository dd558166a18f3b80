"""llmviz.align: every loss against its equation on hand-made inputs, GAE against a direct sum, DPO's gradient sign,
the KL estimators against the exact KL, and named errors for bad shapes and empty responses."""
import math
import re

import pytest
import torch
import torch.nn.functional as F

from llmviz import align, build_model, get_config


@pytest.fixture(scope="module")
def lm():
    torch.manual_seed(0)
    return build_model(get_config("tiny-gpt2", vocab_size=11, max_position_embeddings=16)).eval()


def batch():
    ids = torch.tensor([[1, 2, 3, 4, 5, 6], [6, 5, 4, 3, 2, 1]])
    mask = torch.tensor([[0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 0, 0]])     # responses of length 3 and 2
    return ids, mask


def manual_token_logp(model, ids):
    with torch.no_grad():
        logp = torch.log_softmax(model(ids), -1)
    return torch.stack([torch.stack([logp[b, t - 1, ids[b, t]] for t in range(1, ids.shape[1])])
                        for b in range(len(ids))])                    # [B, T-1]


def test_sequence_logprobs_is_the_sum_over_response_tokens(lm):
    ids, mask = batch()
    tok = manual_token_logp(lm, ids)
    want = torch.stack([tok[0, 2:5].sum(), tok[1, 1:3].sum()])        # token t's log-prob sits at index t - 1
    with torch.no_grad():
        got = align.sequence_logprobs(lm, ids, mask)
    torch.testing.assert_close(got, want)
    assert got.shape == (2,)


def test_sft_loss_is_cross_entropy_on_response_tokens_only(lm):
    ids, mask = batch()
    tok = manual_token_logp(lm, ids)
    want = -(tok[0, 2:5].sum() + tok[1, 1:3].sum()) / 5
    with torch.no_grad():
        torch.testing.assert_close(align.sft_loss(lm, ids, mask), want)


def test_ptx_loss_is_gamma_times_the_lm_loss(lm):
    ids, _ = batch()
    with torch.no_grad():
        logits = lm(ids[:, :-1])
        want = 27.8 * F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten())
        torch.testing.assert_close(align.ptx_loss(lm, ids, 27.8), want)


def test_reward_model_reads_the_last_response_token(lm):
    ids, mask = batch()
    rm = align.RewardModel(lm)
    assert torch.equal(rm(ids, mask), torch.zeros(2))                 # the head starts at zero
    torch.nn.init.normal_(rm.head.weight)
    with torch.no_grad():
        r = rm(ids, mask)
        changed = ids.clone()
        changed[1, 4:] = 0                                            # tokens after row 1's response (padding)
        torch.testing.assert_close(rm(changed, mask), r)
        h = lm.hidden_states(ids)
        torch.testing.assert_close(r, torch.stack([rm.head(h[0, 5]), rm.head(h[1, 3])]).squeeze(-1))


def test_reward_loss_and_the_k_wise_ranking_loss():
    rw, rl = torch.tensor([2.0, 0.5]), torch.tensor([1.0, 1.5])
    want = -(math.log(1 / (1 + math.exp(-1.0))) + math.log(1 / (1 + math.exp(1.0)))) / 2
    assert align.reward_loss(rw, rl).item() == pytest.approx(want)
    ranked = torch.tensor([[3.0, 1.0, 0.0, -2.0]])                    # K = 4 answers, best first: C(4, 2) = 6 pairs
    pairs = [(a, b) for a in range(4) for b in range(a + 1, 4)]
    want = sum(-F.logsigmoid(ranked[0, a] - ranked[0, b]) for a, b in pairs) / len(pairs)
    torch.testing.assert_close(align.ranking_loss(ranked), want)
    torch.testing.assert_close(align.ranking_loss(ranked.expand(3, 4)), want)   # mean over prompts too


def test_kl_penalty_rewards_by_hand():
    logp = torch.tensor([[0.0, -1.0, -2.0, -0.5]])
    ref = torch.tensor([[0.0, -1.5, -1.0, -0.5]])
    mask = torch.tensor([[0, 1, 1, 0]])
    got = align.kl_penalty_rewards(logp, ref, torch.tensor([3.0]), mask, beta=0.1)
    torch.testing.assert_close(got, torch.tensor([[0.0, -0.05, 0.1 + 3.0, 0.0]]))


def test_gae_equals_the_direct_sum():
    g = torch.Generator().manual_seed(0)
    r, v = torch.randn(3, 7, generator=g), torch.randn(3, 7, generator=g)
    gamma, lam = 0.9, 0.8
    adv, ret = align.gae(r, v, gamma, lam)
    v_next = torch.cat([v[:, 1:], torch.zeros(3, 1)], 1)
    delta = r + gamma * v_next - v
    want = torch.stack([sum((gamma * lam) ** (l - t) * delta[:, l] for l in range(t, 7)) for t in range(7)], 1)
    torch.testing.assert_close(adv, want)
    torch.testing.assert_close(ret, adv + v)
    adv1, _ = align.gae(r, v, 1.0, 1.0)                               # γ = λ = 1: reward-to-go minus the value
    torch.testing.assert_close(adv1, r.flip(1).cumsum(1).flip(1) - v)


def test_ppo_losses_by_hand():
    adv = torch.tensor([[1.0, -1.0, 2.0]])
    mask = torch.tensor([[1, 1, 0]])
    same = torch.zeros(1, 3)
    assert align.ppo_policy_loss(same, same, adv, mask).item() == pytest.approx(0.0)   # ρ = 1: −mean A = 0
    logp = torch.log(torch.tensor([[1.5, 1.5, 1.0]]))                 # ρ = 1.5 on both counted tokens
    # token 0: A > 0, clipped at 1.2 -> 1.2; token 1: A < 0, min(-1.5, -1.2) = -1.5
    assert align.ppo_policy_loss(logp, same, adv, mask, clip=0.2).item() == pytest.approx(-(1.2 - 1.5) / 2)
    values, old, ret = torch.tensor([[1.0, 0.0, 5.0]]), torch.tensor([[0.0, 0.0, 0.0]]), torch.tensor([[0.5, 1.0, 0.0]])
    # token 0: max((1-0.5)², (0.2-0.5)²) = 0.25; token 1: max(1, 1) = 1
    assert align.ppo_value_loss(values, old, ret, mask, clip=0.2).item() == pytest.approx(0.5 * (0.25 + 1.0) / 2)


def test_kl_estimators_against_the_exact_kl():
    p = torch.tensor([0.5, 0.3, 0.15, 0.05])
    q = torch.tensor([0.25, 0.25, 0.25, 0.25])
    exact = (p * (p / q).log()).sum()
    x = torch.multinomial(p, 200_000, replacement=True, generator=torch.Generator().manual_seed(0))
    logp, ref = p.log()[x], q.log()[x]
    k1, k3 = align.kl_estimate(logp, ref, "k1"), align.kl_estimate(logp, ref, "k3")
    assert (k3 >= 0).all() and (k1 < 0).any()                        # k1 is negative on some samples, k3 never
    assert k1.mean().item() == pytest.approx(exact.item(), abs=0.01)  # both unbiased
    assert k3.mean().item() == pytest.approx(exact.item(), abs=0.01)
    assert (align.kl_estimate(logp, ref, "k2") >= 0).all()


def test_dpo_loss_is_log2_at_init_and_its_gradient_favours_the_chosen():
    pi_w, pi_l = torch.tensor([-3.0, -5.0], requires_grad=True), torch.tensor([-4.0, -2.0], requires_grad=True)
    loss = align.dpo_loss(pi_w, pi_l, pi_w.detach(), pi_l.detach(), beta=0.1)
    assert loss.item() == pytest.approx(math.log(2))
    loss.backward()
    assert (pi_w.grad < 0).all() and (pi_l.grad > 0).all()           # descent raises log π(y_w), lowers log π(y_l)
    m = 0.1 * ((-2.0 - -3.0) - (-4.0 - -4.0))
    got = align.dpo_loss(torch.tensor([-2.0]), torch.tensor([-4.0]), torch.tensor([-3.0]), torch.tensor([-4.0]))
    assert got.item() == pytest.approx(-math.log(1 / (1 + math.exp(-m))))


def test_grpo_advantages_by_hand():
    r = torch.tensor([1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0])
    adv = align.grpo_advantages(r, 4)
    g = torch.tensor([1.0, 0.0, 0.0, 1.0])
    torch.testing.assert_close(adv[:4], (g - 0.5) / g.std())
    assert torch.equal(adv[4:], torch.zeros(4))                       # an equal group teaches nothing


def test_paper_coefficients_come_from_the_config():
    facts = get_config("instructgpt").facts
    assert align.paper_coefficients() == (facts["kl_coef_beta"], facts["ptx_coef_gamma"]) == (0.02, 27.8)


BAD = [
    ("empty-response", lambda m: align.sequence_logprobs(m, torch.ones(2, 4, dtype=torch.long),
                                                         torch.tensor([[0, 1, 1, 0], [0, 0, 0, 0]])),
     "response_mask", "'rows [1]"),
    ("mask-shape", lambda m: align.sft_loss(m, torch.ones(2, 4, dtype=torch.long), torch.ones(2, 3)),
     "response_mask.shape", "(2, 3)"),
    ("first-token", lambda m: align.sequence_logprobs(m, torch.ones(1, 3, dtype=torch.long), torch.ones(1, 3)),
     "response_mask[:, 0]", "[1.0]"),
    ("reward-shapes", lambda m: align.reward_loss(torch.zeros(3), torch.zeros(2)), "r_rejected.shape", "(2,)"),
    ("ranking-K1", lambda m: align.ranking_loss(torch.zeros(4, 1)), "rewards.shape", "(4, 1)"),
    ("gae-shapes", lambda m: align.gae(torch.zeros(2, 3), torch.zeros(2, 4)), "values.shape", "(2, 4)"),
    ("gae-lambda", lambda m: align.gae(torch.zeros(2, 3), torch.zeros(2, 3), lam=1.5), "lam", "1.5"),
    ("dpo-shapes", lambda m: align.dpo_loss(torch.zeros(2), torch.zeros(2), torch.zeros(3), torch.zeros(2)),
     "ref_chosen.shape", "(3,)"),
    ("dpo-beta", lambda m: align.dpo_loss(*[torch.zeros(2)] * 4, beta=0), "beta", "0"),
    ("grpo-groups", lambda m: align.grpo_advantages(torch.zeros(6), 4), "group_size", "4"),
    ("grpo-size-1", lambda m: align.grpo_advantages(torch.zeros(6), 1), "group_size", "1"),
    ("kl-kind", lambda m: align.kl_estimate(torch.zeros(2), torch.zeros(2), "k4"), "kind", "'k4'"),
    ("ppo-clip", lambda m: align.ppo_policy_loss(*[torch.zeros(1, 2)] * 3, torch.ones(1, 2), clip=1.5), "clip", "1.5"),
    ("ppo-empty-mask", lambda m: align.ppo_policy_loss(*[torch.zeros(1, 2)] * 4), "mask", "'all zero'"),
    ("penalty-score", lambda m: align.kl_penalty_rewards(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(3),
                                                         torch.ones(2, 3), 0.1), "score.shape", "(3,)"),
]


@pytest.mark.parametrize("call, param, value", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_is_named(lm, call, param, value):
    with pytest.raises(ValueError, match=re.escape(param)) as e:
        call(lm)
    assert f"{param}={value}" in str(e.value), str(e.value)
