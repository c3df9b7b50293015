"""How far apart the CPU and a CUDA device are on the same model: the basis for tolerances.

    python benchmarks/compare_devices.py [--model toy-gpt2] [--device cuda]

Loads the model on both devices the supported way and prints the largest absolute difference of
the logits, of the attention patterns and of the residual stream over the prompts the checks use.
"""

from __future__ import annotations

import argparse
import sys

import torch

from grader.judging import held_out, prompts
from grader.models import choose_device, describe_environment, get_spec, load_model

PROMPTS = [prompts.CLEAN_PROMPT, prompts.CORRUPTED_PROMPT, held_out.HELD_OUT_PROMPT, held_out.HELD_OUT_CLEAN]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="toy-gpt2")
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    spec, device = get_spec(args.model), choose_device(args.device)
    on_cpu, on_device = load_model(spec, "cpu"), load_model(spec, device)
    print(f"model {spec.id}; {describe_environment(device)}")
    worst = {"logits": 0.0, "pattern": 0.0, "resid_pre": 0.0}
    with torch.no_grad():
        for prompt in PROMPTS:
            tokens = on_cpu.to_tokens(prompt)
            logits_cpu, cache_cpu = on_cpu.run_with_cache(tokens)
            logits_dev, cache_dev = on_device.run_with_cache(tokens.to(device))
            worst["logits"] = max(worst["logits"], float((logits_cpu - logits_dev.cpu()).abs().max()))
            for layer in range(on_cpu.cfg.n_layers):
                for name in ("pattern", "resid_pre"):
                    diff = (cache_cpu[name, layer] - cache_dev[name, layer].cpu()).abs().max()
                    worst[name] = max(worst[name], float(diff))
    for name, value in worst.items():
        print(f"largest |cpu - {device}| difference of {name:9s} over {len(PROMPTS)} prompts: {value:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
