"""Exercise 08's reference solution agrees with code we did not write, and its attribution patching
with its activation patching where a linear estimate can: TransformerLens's own per-head
activation patching (``transformer_lens.patching``) gives the same map within 1e-4; attribution
patching follows activation patching across heads, and misses by most where the effect is largest."""

from __future__ import annotations

from typing import Any

import pytest
import test_cross_checks as shared
import torch

# The shared fixtures: the practice model through TransformerLens, one torch thread.
folder, model, one_torch_thread = shared.folder, shared.model, shared.one_torch_thread
solution = shared.solution

# Names and templates of the practice model's training distribution (grader/toy/corpus.py).
CASES = {
    "IO first": ("When {io} and {s} went to the store, {s} gave a drink to",
                 [("Mary", "John", "Alice"), ("Bob", "Emma", "Tom"), ("Anna", "David", "Kate"), ("Paul", "Lisa", "Mark"),
                  ("Julia", "Daniel", "Rachel"), ("George", "Helen", "Jack"), ("Emily", "Henry", "Grace"),
                  ("Sam", "Lucy", "Ben")]),
    "S first": ("After {s} and {io} went to the park, {s} gave a book to",
                [("Clara", "Adam", "Olivia"), ("Chris", "Nina", "Oscar"), ("Rose", "Max", "Eva"), ("Leo", "Ruth", "Mary"),
                 ("John", "Sarah", "James"), ("Michael", "Laura", "Peter"), ("Kate", "Tom", "Anna"),
                 ("David", "Emma", "Bob")]),
}


def _batch(model: Any, case: str) -> dict[str, torch.Tensor]:
    template, names = CASES[case]
    return solution("08", "ioi").ioi_batch(model, template, names)


@pytest.mark.parametrize("case", list(CASES))
def test_patch_heads_equals_transformer_lens_per_head_patching(case: str, model: Any) -> None:
    from transformer_lens.patching import get_act_patch_attn_head_out_all_pos

    ioi = solution("08", "ioi")
    batch = _batch(model, case)
    with torch.no_grad():
        clean_diff = ioi.logit_diff(model(batch["clean"]), batch["io"], batch["s"])
        corrupted_logits, corrupted_cache = model.run_with_cache(batch["corrupted"])
        corrupted_diff = ioi.logit_diff(corrupted_logits, batch["io"], batch["s"])
        # TransformerLens runs its first argument with activations from the cache it is given: the
        # clean tokens with the corrupted cache is the exercise's direction (noising).
        theirs = get_act_patch_attn_head_out_all_pos(
            model, batch["clean"], corrupted_cache,
            lambda logits: ioi.ioi_metric(logits, batch["io"], batch["s"], clean_diff, corrupted_diff))
    ours = ioi.patch_heads(model, batch)
    torch.testing.assert_close(ours, theirs.cpu().float(), atol=1e-4, rtol=0)
    assert ours.min() < 0.2, "the comparison must see a head that matters"


@pytest.mark.parametrize("case", list(CASES))
def test_attribution_patching_follows_activation_patching_and_misses_most_where_the_effect_is_large(
        case: str, model: Any) -> None:
    ioi = solution("08", "ioi")
    batch = _batch(model, case)
    patched, estimated = ioi.patch_heads(model, batch), ioi.attribution_patch(model, batch)
    correlation = float(torch.corrcoef(torch.stack([patched.flatten(), estimated.flatten()]))[0, 1])
    print(f"{case}: correlation {correlation:.3f}; patch_heads {patched.tolist()}; attribution {estimated.tolist()}")
    assert correlation > 0.95
    miss = (estimated - patched).abs()
    assert int(miss.argmax()) == int(patched.argmin())  # the head whose corruption costs most (L0H1)
    assert float(estimated.flatten()[patched.argmin()]) > float(patched.min()) + 0.2  # underestimated
    others = torch.ones_like(miss, dtype=torch.bool)
    others.view(-1)[patched.argmin()] = False
    assert float(miss[others].max()) < 0.05  # small changes: the linear estimate holds
