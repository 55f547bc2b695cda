"""Latent rollouts on real benchmark prompts: the harness's batching against the sorted-and-padded floor and the
released reference.

GSM8K test questions (``--data``, default ``../shared/data/gsm_test.json``, in file order) as COCONUT prompts
(``question + "\\n<|start-latent|>"``) with the tests' released-layout byte-level tokenizer, random COCONUT-layout
GPT-2 models (``--sizes``: layers x hidden, 1024 positions; e.g. ``--sizes 12x768 --device cuda``), noise sampling (sigma 0.5; N=1 draws the greedy
rollout), 6 latents, 8 answer tokens (EOS disabled so every row decodes 8), up to ``--batch`` questions per call:

- ``harness``: ``scaling.engine.Engine`` (the ``latent_tts`` policy: groups by canonical padded width,
  ``scaling.rollouts.padded_length``, longest first) calling ``scaling.rollouts.sample``.
- ``floor``: the same ``generate``, questions sorted by length (longest first), ``--batch`` per call, each
  call left-padded to its longest prompt (what a batch-size-dependent policy would do).
- ``reference``: the released implementation (ModalityDance/LatentTTS ``src/``, given by ``--reference``)
  run by ``--reference-python`` (a virtualenv with transformers 4.52.4 and torch), in a subprocess, on the same
  weights and token ids: sorted by length, ``--batch`` questions per call, N prompt copies
  (``num_return_sequences``). Without ``--reference`` that column says ``absent``.

Each cell is seconds (one timed pass after a warm-up call), calls and questions per call; the three run
interleaved per (size, N) so that load on the machine hits them alike.  Example (the README table):
``python benchmarks/real_prompts.py --reference /path/to/LatentTTS --reference-python /path/to/venv/bin/python``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

LATENTS, ANSWER, NOISE = 6, 8, 0.5
# questions per N in the default run (small enough for a few minutes on 2 loaded cores)
DEFAULT_QUESTIONS = {1: 64, 16: 32, 64: 8}


def build(layers: int, hidden: int, tok):
    import hf_modeling

    torch.manual_seed(0)
    ids = {t: tok.convert_tokens_to_ids(t) for t in ("<|latent|>", "<|start-latent|>", "<|end-latent|>")}
    config = hf_modeling.CoconutConfig(
        vocab_size=len(tok), n_positions=1024, n_layer=layers, n_embd=hidden, n_head=max(1, hidden // 64),
        latent_id=ids["<|latent|>"], latent_start_id=ids["<|start-latent|>"], latent_end_id=ids["<|end-latent|>"],
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=tok.eos_token_id,
        latent_length=LATENTS,
    )
    return hf_modeling.COCONUTGPT2(config).eval()


def settings(model, n: int):
    sampling = dict(latent_sampling="noise", noise_std=NOISE) if n > 1 else dict(latent_sampling=None)
    return model.latent_generation_config(num_return_sequences=n, seed=0, max_new_tokens=ANSWER, eos_token_id=[-1],
                                          greedy_baseline=False, **sampling)


class Counter:
    """Counts rollout calls (``model.rollout``: ``generate``'s and the harness's) and their questions (prompt
    rows before the N copies)."""

    def __init__(self, model):
        self.calls, self.questions, self.model, self.original = 0, 0, model, model.rollout

        def counted(input_ids, *args, **kwargs):
            self.calls += 1
            self.questions += input_ids.shape[0]
            return self.original(input_ids, *args, **kwargs)

        model.rollout = counted

    def reset(self):
        self.calls = self.questions = 0


def run_harness(model, tok, prompts, n, batch):
    """The candidates' answers of every prompt as the harness draws them (``scaling.engine``: grouped by padded
    width, longest first, ``batch`` questions per call), without the checks and the greedy decode."""
    from lm_eval_latenttts.scaling.engine import Engine, Job

    engine = Engine(model, tok, None, batch, batch)
    plan = engine.plan(settings(model, n), payload=False)
    return [draw.answers for draw, _, _ in engine.draws([Job(i, p, plan) for i, p in enumerate(prompts)])]


def run_floor(model, tok, prompts, n, batch):
    config = settings(model, n)
    order = sorted(range(len(prompts)), key=lambda i: (-len(prompts[i]), i))
    for start in range(0, len(order), batch):
        chunk = [prompts[i] for i in order[start:start + batch]]
        width = max(len(p) for p in chunk)
        ids = torch.full((len(chunk), width), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, p in enumerate(chunk):
            ids[row, width - len(p):] = torch.tensor(p)
            mask[row, width - len(p):] = 1
        model.generate(ids.to(model.device), mask.to(model.device), config,
                       num_return_sequences=n if config.samples else 1)


REFERENCE_CHILD = r'''
import json, sys, time, torch
spec = json.load(open(sys.argv[1]))
sys.path.insert(0, spec["reference"])
torch.set_num_threads(spec["threads"])
from src.generation_mixin import LatentGenerationMixin, LatentGenerationConfig
from src.models.coconut import COCONUTGPT2
class Model(COCONUTGPT2, LatentGenerationMixin):
    pass
model = Model.from_pretrained(spec["model"], attn_pdrop=0.0, embd_pdrop=0.0).eval()
prompts, pad, n, batch = spec["prompts"], spec["pad"], spec["n"], spec["batch"]
sample = dict(latent_do_sample=True, latent_do_sample_by="noise", noise_std=spec["noise"]) if n > 1 else {}
config = LatentGenerationConfig(max_new_tokens=spec["latents"] + 1 + spec["answer"], latent_length=spec["latents"],
                                pad_token_id=pad, eos_token_id=None, bos_token_id=pad, **sample)
order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
def run(chunks):
    widths = []
    for start in range(0, len(order), batch):
        chunk = [prompts[i] for i in order[start:start + batch]][:chunks]
        width = max(len(p) for p in chunk)
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in chunk])
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in chunk])
        out = model.generate(input_ids=ids, attention_mask=mask, generation_config=config, num_return_sequences=n,
                             use_cache=True)
        widths.append(out.shape[1] - width)
    return widths
with torch.no_grad():
    run(1)  # warm-up
    start = time.perf_counter()
    new = run(None)
print(json.dumps({"seconds": time.perf_counter() - start, "calls": len(new), "new_tokens": new[0]}))
'''


def run_reference(args, model, prompts, n, pad, workdir):
    spec = {"reference": str(Path(args.reference).resolve()), "model": str(workdir / "model"), "prompts": prompts,
            "pad": pad, "n": n, "batch": args.batch, "noise": NOISE, "latents": LATENTS, "answer": ANSWER,
            "threads": torch.get_num_threads()}
    (workdir / "spec.json").write_text(json.dumps(spec))
    (workdir / "child.py").write_text(REFERENCE_CHILD)
    res = subprocess.run([args.reference_python, str(workdir / "child.py"), str(workdir / "spec.json")],
                         capture_output=True, text=True, env=dict(os.environ, TRANSFORMERS_VERBOSITY="error"))
    if res.returncode != 0:
        raise SystemExit(f"the reference failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "gsm_test.json"),
                        help="a JSON list of {'question': ...} rows (GSM8K test)")
    parser.add_argument("--sizes", nargs="+", default=["2x64", "6x384"], help="models as LAYERSxHIDDEN")
    parser.add_argument("--n", type=int, nargs="+", default=[1, 16, 64], help="samples per question")
    parser.add_argument("--questions", type=int, nargs="+", default=None,
                        help="questions per N (one value, or one per --n); default 64 at N=1, 32 at 16, 8 at 64")
    parser.add_argument("--batch", type=int, default=64, help="questions per call (the harness's batch_size)")
    parser.add_argument("--impls", nargs="+", default=["harness", "floor", "reference"],
                        choices=["harness", "floor", "reference"])
    parser.add_argument("--reference", default=None, help="the released LatentTTS checkout (holds src/)")
    parser.add_argument("--reference-python", default=None, help="python of a virtualenv with transformers 4.52.4")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--device", default="cpu", help="torch device of harness and floor (the reference: CPU)")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    parser.add_argument("--write-checkpoint", default=None, metavar="DIR",
                        help="only write a random COCONUT checkpoint in the released layout (the first --sizes, "
                             "1024 positions, the tests' tokenizer) to DIR, for an lm_eval run on real prompts")
    args = parser.parse_args()
    if args.write_checkpoint:
        from tiny_models import make_checkpoint

        layers, hidden = (int(x) for x in args.sizes[0].lower().split("x"))
        make_checkpoint(args.write_checkpoint, kind="coconut", n_layer=layers, hidden=hidden, n_positions=1024)
        print(f"wrote {args.write_checkpoint}")
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    from tiny_models import make_tokenizer

    tok = make_tokenizer()
    rows = json.loads(Path(args.data).read_text())
    questions = args.questions or [DEFAULT_QUESTIONS.get(n, 8) for n in args.n]
    if len(questions) == 1:
        questions = questions * len(args.n)
    if len(questions) != len(args.n):
        parser.error("--questions takes one value or one per --n")
    reference = "reference" in args.impls
    if reference and not (args.reference and (Path(args.reference) / "src" / "generation_mixin.py").is_file()
                          and args.reference_python):
        print("reference: absent (pass --reference <LatentTTS checkout> and --reference-python <venv python with "
              "transformers 4.52.4>); its column is not measured.", flush=True)
        reference = False

    results = []
    for size in args.sizes:
        layers, hidden = (int(x) for x in size.lower().split("x"))
        model = build(layers, hidden, tok).to(args.device)
        counter = Counter(model)
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            if reference:
                model.save_pretrained(workdir / "model")
            for n, count in zip(args.n, questions):
                prompts = [tok(model.format_prompt(r["question"]))["input_ids"] for r in rows[:count]]
                row = {"size": size, "n": n, "questions": len(prompts),
                       "lengths": [min(map(len, prompts)), max(map(len, prompts))]}
                for impl in args.impls:
                    if impl == "reference":
                        if reference:
                            got = run_reference(args, model, prompts, n, tok.pad_token_id, workdir)
                            row["reference"] = {"seconds": got["seconds"], "calls": got["calls"],
                                                "per_call": len(prompts) / got["calls"]}
                        continue
                    fn = run_harness if impl == "harness" else run_floor
                    with torch.no_grad():
                        fn(model, tok, prompts[:2], n, args.batch)  # warm-up
                        counter.reset()
                        start = time.perf_counter()
                        fn(model, tok, prompts, n, args.batch)
                        if args.device.startswith("cuda"):
                            torch.cuda.synchronize()
                        seconds = time.perf_counter() - start
                    row[impl] = {"seconds": seconds, "calls": counter.calls,
                                 "per_call": counter.questions / max(counter.calls, 1)}
                results.append(row)
                cells = []
                for impl in ("harness", "floor", "reference"):
                    r = row.get(impl)
                    cells.append(f"{r['seconds']:7.2f} s ({r['calls']:3d} calls, {r['per_call']:5.1f}/call)" if r
                                 else f"{'absent' if impl == 'reference' else '-':>33s}")
                ratio = ""
                if "harness" in row and "floor" in row:
                    ratio += f" harness/floor {row['harness']['seconds'] / row['floor']['seconds']:.2f}"
                if "harness" in row and "reference" in row:
                    ratio += f" reference/harness {row['reference']['seconds'] / row['harness']['seconds']:.2f}"
                print(f"{size:>6} N={n:<3d} q={len(prompts):<4d} harness {cells[0]} | floor {cells[1]} | "
                      f"reference {cells[2]}{ratio}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"batch": args.batch, "threads": torch.get_num_threads(),
                                               "rows": results}, indent=2))


if __name__ == "__main__":
    main()
