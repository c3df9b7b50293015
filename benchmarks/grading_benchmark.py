"""How long grading takes, and how much of it is the grader's own overhead.

For the toy model and for a GPT-2-small-shaped model with random weights (built here from GPT-2
small's config: the same compute as the real model, no download), each of three configurations is
run `--repeat` times (default 3), interleaved (floor, in-process, isolated, floor, ...) so that a
slow phase of a shared machine falls on all three alike:

- the floor: a plain script in a fresh process that imports, loads the model once and makes the
  calls the reference solutions make (their forward passes included), with no grader at all;
- grading the exercises with the reference solutions in this process, from process start to the
  reports written, split into start-up (Python, pytest, imports), model load, checks and reports;
- the same grading with ``--isolate`` (student code in worker processes forked from a template).

It prints each configuration's median wall time with the min-max spread, the ratios of the
medians to the floor's (targets: in-process at most 1.5; isolated at most 2 on the toy model and
1.3 on the GPT-2-shaped one), and the peak memory of each run: the largest sum, over the run's
whole process tree, of each process's proportional set size (PSS: a page shared by the grader,
the template and a worker counts once in all), sampled every 0.5 s; median and spread again, the
isolated median against the in-process one (targets 1.5 on the toy model, 1.2 on GPT-2's shape).

    python benchmarks/grading_benchmark.py [--device cpu] [--repeat N] [--exercise NN ...] [--skip-gpt2-shaped]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TOY = REPO / "fixtures" / "models" / "toy-gpt2"


def build_gpt2_shaped(folder: Path) -> Path:
    """GPT-2 small's architecture with random weights, and the toy tokenizer (GPT-2's cannot be
    downloaded here). The vocabulary stays 50257 wide, so the unembedding costs what GPT-2's does."""
    import shutil

    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(bos_token_id=0, eos_token_id=0)  # the defaults are GPT-2 small: 12 x 768, 50257
    GPT2LMHeadModel(config).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "special_tokens_map.json"):
        if (TOY / name).exists():
            shutil.copy(TOY / name, folder / name)
    return folder


def _tree(pid: int) -> list[int]:
    """`pid` and all its descendants (from /proc: each process's parent)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents.setdefault(int(stat[stat.rfind(")") + 2:].split()[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(parents.get(current, []))
    return found


def _pss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run_child(command: list[str], env: dict[str, str],
              allowed: tuple[int, ...] = (0,)) -> tuple[float, subprocess.CompletedProcess, float]:
    """Run a child process (its exit status must be one of `allowed`); return its wall time, the
    finished process and the peak PSS (MiB) of its process tree."""
    started = time.time()
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0.0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, sum(_pss_mib(p) for p in _tree(process.pid)))
            time.sleep(0.5)  # reading smaps of a multi-GB process is not free: sample gently

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = process.communicate()
    done.set()
    sampler.join()
    wall = time.time() - started
    completed = subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
    if completed.returncode not in allowed:
        sys.stderr.write(completed.stdout[-3000:] + completed.stderr[-3000:])
        raise SystemExit(f"benchmark child failed: {' '.join(command)}")
    return wall, completed, peak


def _targets(exercises: list[str]) -> list[str]:
    return [f"exercises/{exercise}" for exercise in exercises]


def grade(model: str, device: str, fixtures_dir: Path, work: Path, exercises: list[str], isolate: bool = False,
          full_marks: bool = True) -> dict[str, float]:
    """Grade the solutions; `full_marks`: they must score 100% (random weights lack some of the
    circuits the checks look for, so there some checks fail: the time is what counts)."""
    work = work / ("isolated" if isolate else "in-process")
    work.mkdir(parents=True, exist_ok=True)
    for stale in ("timings.json", "results.json"):  # a run that fails to write them must not reuse the last
        (work / stale).unlink(missing_ok=True)
    timings = work / "timings.json"
    env = {**os.environ, "MECHGRADE_TIMINGS": str(timings), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "pytest", *_targets(exercises), "-p", "grader.plugin", "-p", "no:cacheprovider",
               "-q", "--solutions", "--model", model, "--device", device, "--fixtures-dir", str(fixtures_dir),
               "--report-html", str(work / "report.html"), "--gradescope-json", str(work / "results.json"),
               *(["--isolate"] if isolate else [])]
    started = time.time()
    wall, _, peak = run_child(command, env, allowed=(0,) if full_marks else (0, 1))
    stamps = json.loads(timings.read_text())
    score = json.loads((work / "results.json").read_text())
    total = sum(t["max_score"] for t in score["tests"])
    if score["score"] != total:
        if full_marks:
            raise SystemExit(f"the solutions scored {score['score']} / {total} on {model}: fix that before timing")
        print(f"  (the solutions scored {score['score']:g} / {total:g} on random weights)")
    return {
        "wall": wall,
        "startup": stamps["load_start"] - started,
        "load": stamps["load_end"] - stamps["load_start"],
        "checks": stamps["checks_end"] - stamps["load_end"],
        "reports": stamps["reports_end"] - stamps["checks_end"],
        "peak_mib": round(peak),
    }


def refresh(model: str, device: str, fixtures_dir: Path, exercises: list[str]) -> None:
    command = [sys.executable, "-m", "pytest", *_targets(exercises), "-p", "grader.plugin", "-p", "no:cacheprovider", "-q",
               "--solutions", "--model", model, "--device", device, "--fixtures-dir", str(fixtures_dir),
               "--fixtures-mode=refresh-incomplete", "--report-html", ""]
    run_child(command, {**os.environ, "HF_HUB_OFFLINE": "1"}, allowed=(0, 1))


def floor(model: str, device: str, exercises: list[str]) -> dict[str, float]:
    started = time.time()
    wall, completed, peak = run_child([sys.executable, __file__, "--floor-of", model, "--device", device,
                                       *(f"--exercise={exercise}" for exercise in exercises)],
                                      {**os.environ, "HF_HUB_OFFLINE": "1"})
    stamps = json.loads(completed.stdout.strip().splitlines()[-1])
    return {"wall": wall, "startup": stamps["imported"] - started, "load": stamps["loaded"] - stamps["imported"],
            "work": stamps["done"] - stamps["loaded"], "peak_mib": round(peak)}


def floor_script(model: str, device: str, exercises: list[str]) -> None:
    """What the checks of `exercises` need, done directly: imports, one load, the reference
    solutions' calls."""
    import torch
    import transformer_lens  # noqa: F401  (its import is part of the floor)

    from grader.models import get_spec

    stamps = {"imported": time.time()}
    source = get_spec(model).source
    model_ = _solution("01", "load_model").load_model(source, device)
    stamps["loaded"] = time.time()
    with torch.no_grad():
        for exercise in exercises:
            FLOOR_CALLS[exercise](model_, source, device, get_spec(model).id)
    stamps["done"] = time.time()
    stamps["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(stamps))


def _solution(exercise: str, topic: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(topic, REPO / "solutions" / exercise / f"{topic}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _floor_01(model_, source: str, device: str, model_id: str) -> None:
    load = _solution("01", "load_model")
    load.load_model(source, device)  # exercise 01 boots the student's own copy
    load.model_summary(model_)


def _floor_02(model_, source: str, device: str, model_id: str) -> None:
    from grader.judging.held_out import DEFAULT
    from grader.judging.prompts import CLEAN_PROMPT

    cache_ex = _solution("02", "cache")
    for prompt in (CLEAN_PROMPT, DEFAULT.prompt):
        logits, cache = cache_ex.run_with_cache(model_, prompt)
        cache_ex.count_cached(cache), cache_ex.top_prediction(model_, logits), cache_ex.top_k(model_, logits)
        cache_ex.residual_norms(cache)


def _floor_03(model_, source: str, device: str, model_id: str) -> None:
    from grader.judging.held_out import DEFAULT
    from grader.judging.prompts import APART_PROMPT, CLEAN_PROMPT

    cache_ex, attention = _solution("02", "cache"), _solution("03", "attention")
    for prompt in (CLEAN_PROMPT, DEFAULT.prompt):
        _, cache = cache_ex.run_with_cache(model_, prompt)
        tokens = model_.to_str_tokens(prompt)
        attention.attention_pattern(cache, 0, 0)
        attention.heads_attending_to(cache, tokens, tokens[-2].strip())
    import matplotlib.pyplot as plt

    plt.close(attention.plot_attention(cache["pattern", 0][0, 0], tokens))
    for adjacent, apart, word in ((CLEAN_PROMPT, APART_PROMPT, "France"), (DEFAULT.adjacent, DEFAULT.apart, DEFAULT.word)):
        _, near = cache_ex.run_with_cache(model_, adjacent)
        _, far = cache_ex.run_with_cache(model_, apart)
        attention.content_heads(near, model_.to_str_tokens(adjacent), far, model_.to_str_tokens(apart), word)


def _floor_04(model_, source: str, device: str, model_id: str) -> None:
    from grader.judging.held_out import DEFAULT
    from grader.judging.prompts import CLEAN_ANSWERS, CLEAN_PROMPT, CORRUPTED_PROMPT

    cache_ex, patching = _solution("02", "cache"), _solution("04", "patching")
    for clean, corrupted, answers in ((CLEAN_PROMPT, CORRUPTED_PROMPT, CLEAN_ANSWERS),
                                      (DEFAULT.clean, DEFAULT.corrupted, DEFAULT.answers)):
        _, clean_cache = cache_ex.run_with_cache(model_, clean)
        patching.patch_residual_stream(model_, model_.to_tokens(clean), model_.to_tokens(corrupted), clean_cache,
                                       model_.to_single_token(answers[0]), model_.to_single_token(answers[1]))


def _floor_05(model_, source: str, device: str, model_id: str) -> None:
    """The residual stream (each check also runs the grader's own forward pass)."""
    import matplotlib.pyplot as plt

    from grader.judging.held_out import DEFAULT
    from grader.judging.prompts import CLEAN_ANSWERS, CLEAN_PROMPT

    cache_ex, residual = _solution("02", "cache"), _solution("05", "residual")
    for prompt, answers in ((CLEAN_PROMPT, CLEAN_ANSWERS), (DEFAULT.clean, DEFAULT.answers),
                            (DEFAULT.ioi_prompt, DEFAULT.ioi_answers)):
        _, cache = cache_ex.run_with_cache(model_, prompt)
        residual.logit_diff_direction(model_, *answers)
        lens = residual.logit_lens(model_, cache, *answers)
        residual.head_attributions(model_, cache, *answers)
    plt.close(residual.plot_logit_lens(lens, [str(i) for i in range(len(lens))]))


def _floor_06(model_, source: str, device: str, model_id: str) -> None:
    """The checks' two token batches (n = 20 and 13), each scored, lost and ablated."""
    import matplotlib.pyplot as plt

    induction = _solution("06", "induction")
    for seq_len, batch in ((20, 4), (13, 3)):
        tokens = induction.repeated_tokens(model_, seq_len, batch)
        scores = induction.induction_scores(model_, tokens)
        previous = induction.previous_token_scores(model_, tokens)
        induction.induction_heads(scores)
        induction.copy_losses(induction.per_token_loss(model_, tokens))
        top = scores if seq_len == 20 else previous
        induction.ablate_head(model_, tokens, *divmod(int(top.argmax()), top.shape[1]))
    plt.close(induction.plot_induction_scores(scores))


def _floor_07(model_, source: str, device: str, model_id: str) -> None:
    """Exercise 07's reference calls: its activations, one training, the unit calls, top tokens, a plot."""
    import matplotlib.pyplot as plt
    import torch

    from grader.judging.prompts import CLEAN_PROMPT
    from grader.toy import sae as ref
    from grader.toy.corpus import generate

    sae_ex = _solution("07", "sae")
    train, held_out = ref.training_activations(model_), ref.held_out_activations(model_)
    d_sae = ref.sae_width(train.shape[1])
    with torch.enable_grad():
        trained = sae_ex.train_sae(train, d_sae, ref.STEPS, ref.LR, ref.l1_coeff_for(train), ref.SEED, ref.BATCH_SIZE)
    ref.measure({k: v.detach() for k, v in trained.state_dict().items()}, held_out)
    shipped = sae_ex.SparseAutoencoder(train.shape[1], d_sae)
    shipped.load_state_dict(ref.reference_sae(model_, model_id))
    sae_ex.sae_loss(shipped, held_out[:8], 0.37), shipped(held_out[:8])
    sae_ex.normalize_decoder(shipped)
    shipped.load_state_dict(ref.reference_sae(model_, model_id))
    for prompts, k in ((["The capital of France is Paris."] * 8, 8), (generate(30, seed=103), 5)):
        sae_ex.top_activating_tokens(shipped, model_, prompts, 0, k)
    acts = model_.run_with_cache(model_.to_tokens(CLEAN_PROMPT), names_filter=ref.HOOK_POINT)[1][ref.HOOK_POINT][0]
    plt.close(sae_ex.plot_latent_activations(shipped.encode(acts), model_.to_str_tokens(CLEAN_PROMPT), [0, 1, 2]))


def _floor_08(model_, source: str, device: str, model_id: str) -> None:
    """Exercise 08's reference calls on the checks' two batches: the text's template and the held-out one."""
    import importlib.util

    import matplotlib.pyplot as plt

    from grader.judging.held_out import DEFAULT
    from grader.judging.prompts import IOI_TEMPLATE

    spec = importlib.util.spec_from_file_location("checks_08", REPO / "exercises" / "08" / "test_08_ioi.py")
    checks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(checks)  # the batches exactly as the checks build them
    ioi = _solution("08", "ioi")
    ioi.ioi_batch(model_, IOI_TEMPLATE, checks.grader_names(checks.PUBLIC_SEED, 6))
    ioi.ioi_batch(model_, DEFAULT.ioi_template, DEFAULT.ioi_triples()[:6])
    public, held_out = checks.public_batch(model_), checks.held_out_batch(model_, DEFAULT)
    clean_logits = model_(public["clean"])  # one forward pass, read twice
    clean_diff = ioi.logit_diff(clean_logits, public["io"], public["s"])
    corrupted_diff = ioi.logit_diff(model_(public["corrupted"]), public["io"], public["s"])
    ioi.ioi_metric(clean_logits, public["io"], public["s"], clean_diff, corrupted_diff)
    for batch in (public, held_out):
        patching, attribution = ioi.patch_heads(model_, batch), ioi.attribution_patch(model_, batch)
        ioi.path_patch_to_logits(model_, batch, (0, 1))
    ioi.path_patch(model_, public, (0, 1), [(1, 0), (1, 1), (1, 2), (1, 3)], "q")
    ioi.path_patch(model_, held_out, (0, 1), [(1, 1), (1, 3)], "v")
    plt.close(ioi.plot_attribution_vs_patching(patching, attribution))


FLOOR_CALLS = {"01": _floor_01, "02": _floor_02, "03": _floor_03, "04": _floor_04, "05": _floor_05,
               "06": _floor_06, "07": _floor_07, "08": _floor_08}


MODES = ("floor", "in-process", "isolated")
PARTS = {"floor": ("startup", "load", "work"), "in-process": ("startup", "load", "checks", "reports"),
         "isolated": ("startup", "load", "checks", "reports")}


def measure(model: str, device: str, fixtures_dir: Path, work: Path, exercises: list[str], repeat: int,
            full_marks: bool) -> dict[str, list[dict[str, float]]]:
    """Each configuration `repeat` times, interleaved (floor, in-process, isolated, floor, ...), so
    that a slow phase of a shared machine falls on all three alike."""
    runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    for round_ in range(1, repeat + 1):
        runs["floor"].append(floor(model, device, exercises))
        runs["in-process"].append(grade(model, device, fixtures_dir, work, exercises, full_marks=full_marks))
        runs["isolated"].append(grade(model, device, fixtures_dir, work, exercises, isolate=True, full_marks=full_marks))
        print(f"  round {round_}/{repeat}: " + ", ".join(f"{mode} {runs[mode][-1]['wall']:.1f} s" for mode in MODES),
              flush=True)
    return runs


def _median(values: list[float]) -> float:
    return statistics.median(values)


def _spread(values: list[float], unit: str, digits: int = 1) -> str:
    """median [min-max]"""
    return f"{_median(values):.{digits}f} {unit} [{min(values):.{digits}f}-{max(values):.{digits}f}]"


def report(name: str, runs: dict[str, list[dict[str, float]]], targets: dict[str, tuple[float, float]]) -> None:
    """Medians with their min-max spread; ratios of medians. `targets`: mode -> (time / floor,
    peak memory / in-process)."""
    print(f"\n{name} ({len(runs['floor'])} runs of each, interleaved; median [min-max])")
    floor_wall = _median([r["wall"] for r in runs["floor"]])
    in_process_peak = _median([r["peak_mib"] for r in runs["in-process"]])
    for mode in MODES:
        rows = runs[mode]
        split = " + ".join(f"{part} {_median([r[part] for r in rows]):.1f}" for part in PARTS[mode])
        print(f"  {mode:<10}: {_spread([r['wall'] for r in rows], 's')}  = {split}  "
              f"(peak memory {_spread([r['peak_mib'] for r in rows], 'MiB', 0)})")
        if mode == "floor":
            continue
        time_target, memory_target = targets[mode]
        ratio = _median([r["wall"] for r in rows]) / floor_wall
        line = f"    time / floor: {ratio:.2f} (target <= {time_target}: {'met' if ratio <= time_target else 'NOT met'})"
        if mode != "in-process":
            memory = _median([r["peak_mib"] for r in rows]) / in_process_peak
            line += (f"; peak memory / in-process: {memory:.2f} (target <= {memory_target}: "
                     f"{'met' if memory <= memory_target else 'NOT met'})")
        print(line, flush=True)


def _exercise(value: str) -> str:
    if value not in FLOOR_CALLS:
        raise argparse.ArgumentTypeError(f"no exercise {value!r}: give one of {', '.join(FLOOR_CALLS)} (two digits)")
    return value


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"--repeat takes a whole number of runs, 1 or more, not {value!r}")
    return int(value)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-gpt2-shaped", action="store_true", help="time the toy model only")
    parser.add_argument("--repeat", type=_positive, default=3, help="runs of each configuration (default 3)")
    parser.add_argument("--exercise", type=_exercise, action="append", metavar="NN",
                        help="time only this exercise (repeat the option for several; default all)")
    parser.add_argument("--floor-of", help=argparse.SUPPRESS)  # internal: run the floor script
    args = parser.parse_args()
    exercises = sorted(set(args.exercise or FLOOR_CALLS))
    if args.floor_of:
        floor_script(args.floor_of, args.device, exercises)
        return 0
    print(f"device {args.device}; python {sys.version.split()[0]}; cores {os.cpu_count()}; "
          f"exercises {' '.join(exercises)}; {args.repeat} run(s) of each configuration")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        toy = "toy-gpt2"
        report(toy, measure(toy, args.device, REPO / "fixtures", work, exercises, args.repeat, full_marks=True),
               {"in-process": (1.5, 0), "isolated": (2.0, 1.5)})
        if not args.skip_gpt2_shaped:
            shaped = build_gpt2_shaped(work / "gpt2-shaped-random")
            fixtures = work / "fixtures"
            refresh(str(shaped), args.device, fixtures, exercises)  # expected values for it, as an instructor would make
            report("GPT-2-small-shaped, random weights",
                   measure(str(shaped), args.device, fixtures, work, exercises, args.repeat, full_marks=False),
                   {"in-process": (1.5, 0), "isolated": (1.3, 1.2)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
