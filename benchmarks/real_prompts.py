"""Latent rollouts on real benchmark prompts: the harness against its arithmetic floor, the batch-size-dependent
padding policy and the released reference, in process and through the ``lm_eval`` command.

GSM8K test questions (``--data``, default ``../shared/data/gsm_test.json``, in file order) as COCONUT prompts
(``question + "\\n<|start-latent|>"``) with the tests' released-layout byte-level tokenizer, random COCONUT-layout
GPT-2 models (``--sizes``: layers x hidden, hidden/64 heads, 1024 positions; e.g. ``--sizes 12x768 --device cuda``),
noise sampling (sigma 0.5; N=1: no sampling), 6 latents, 8 answer tokens (EOS disabled so every row decodes 8),
up to ``--batch`` questions per call:

- ``harness``: ``scaling.engine.Engine`` (the ``latent_tts`` policy: groups by canonical padded width,
  ``scaling.rollouts.padded_length``, longest first) calling ``scaling.rollouts.sample``.
- ``floor``: the arithmetic floor of the harness's own calls: their linear layers and attention alone, on
  random inputs of the same shapes with the same weights and attention kernels (``arithmetic_floor``);
  ``achieved`` = floor / harness.
- ``padded``: the same ``generate``, questions sorted by length (longest first), ``--batch`` per call, each
  call left-padded to its longest prompt (what a batch-size-dependent policy would do).
- ``reference``: the released implementation (ModalityDance/LatentTTS ``src/``, given by ``--reference``)
  run by ``--reference-python`` (a virtualenv of its own with transformers 4.52.4 and torch), in a
  subprocess, on the same weights and token ids: sorted by length, ``--batch`` questions per call, N prompt
  copies (``num_return_sequences``). At N=1 (greedy) the answers are compared token for token with the
  harness's (``same answer tokens``). Without ``--reference`` that column says ``absent``.
- ``--lm-eval``: the rollout phase (``generate_until``: start-up and task indexing left out) of
  ``lm_eval --model latent_tts --model_args pretrained=<the model>,n=N,... --tasks latent_gsm8k --limit Q
  --batch_size <--batch>`` on the same questions, against the reference's run of them (the ``reference``
  column, run once per repeat between them).

Each cell is the minimum over ``--repeats`` timed runs (after a warm-up), interleaved per (size, N) so that
load on the machine hits every column alike; calls and questions per call beside it.  Example (the table of
docs/speed.md): ``python benchmarks/real_prompts.py --threads 1 --lm-eval --reference /path/to/LatentTTS
--reference-python /path/to/venv/bin/python``.
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

        def counted(input_ids, attention_mask, config, n=None, **kwargs):
            self.calls += 1
            self.questions += input_ids.shape[0]
            self.shapes.append((input_ids.shape[0], input_ids.shape[1], n or config.num_return_sequences))
            out = self.original(input_ids, attention_mask, config, n, **kwargs)
            self.answers.append(out.answer_ids)
            return out

        self.shapes, self.answers = [], []
        model.rollout = counted

    def reset(self):
        self.calls = self.questions = 0
        self.shapes, self.answers = [], []


def run_harness(model, tok, prompts, n, batch):
    """The candidates' texts of every prompt as the harness draws them (``scaling.engine``: grouped by padded
    width, longest first, ``batch`` questions per call), without the checks and the greedy decode."""
    from lm_eval_latenttts.scaling.engine import Engine, Job

    engine = Engine(model, tok, None, batch, batch)
    plan = engine.plan(settings(model, n), payload=False)
    return [drawn.draw.texts for drawn in engine.draws([Job(i, p, plan) for i, p in enumerate(prompts)])]


def run_padded(model, tok, prompts, n, batch):
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


@torch.no_grad()
def arithmetic_floor(model, shapes) -> float:
    """Seconds of the recorded calls' linear layers and attention alone, on random inputs of their shapes.

    A call of Q prompts of width W with N rollouts (``Counter.shapes``) runs the prompt pass over the
    prompts (Q rows with noise or no sampling: the prompt is shared; at least ``MIN_ROWS`` rows with ghosts)
    and then ``LATENTS + ANSWER`` one-token steps over Q*N rows, each attending to the cache so far, the
    answer steps through the LM head.  Here only those matrix products (``addmm`` with the model's own
    weights) and the attention (SDPA with the kernel the harness uses in each phase) run: what the call
    cannot go below on this machine, whatever the framework around it.
    """
    from hf_modeling.latent_state import batch_invariant_attention, ghost_questions

    body, head = model.transformer, model.lm_head.weight.t()
    d, heads = model.config.n_embd, model.config.n_head
    layers = [(b.attn.c_attn, b.attn.c_proj, b.mlp.c_fc, b.mlp.c_proj) for b in body.h]
    inner = layers[0][2].weight.shape[1]
    seconds = 0.0
    for questions, width, n in shapes:
        rows = (questions + ghost_questions(questions, n)) * n
        prompt_rows = questions  # the ghosts copy the last question's prompt state
        x, h = torch.randn(prompt_rows * width, d), torch.randn(prompt_rows * width, inner)
        q = torch.randn(prompt_rows, heads, width, d // heads)
        xs, hs = torch.randn(rows, d), torch.randn(rows, inner)
        qs = torch.randn(rows, heads, 1, d // heads)
        keys = torch.randn(rows, heads, width + LATENTS + ANSWER + 1, d // heads)
        start = time.perf_counter()
        with batch_invariant_attention(x.device, "prompt"):
            for qkv, proj, fc, out in layers:
                torch.addmm(qkv.bias, x, qkv.weight), torch.addmm(proj.bias, x, proj.weight)
                torch.addmm(fc.bias, x, fc.weight), torch.addmm(out.bias, h, out.weight)
                torch.nn.functional.scaled_dot_product_attention(q, q, q, is_causal=True)
        with batch_invariant_attention(x.device, "steps"):
            for step in range(LATENTS + ANSWER):
                cached = keys[:, :, : width + step + 1]
                for qkv, proj, fc, out in layers:
                    torch.addmm(qkv.bias, xs, qkv.weight), torch.addmm(proj.bias, xs, proj.weight)
                    torch.addmm(fc.bias, xs, fc.weight), torch.addmm(out.bias, hs, out.weight)
                    torch.nn.functional.scaled_dot_product_attention(qs, cached, cached)
                if step >= LATENTS:
                    xs @ head
        seconds += time.perf_counter() - start
    return seconds


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
answers = [None] * len(prompts)
def run(chunks):
    widths = []
    for start in range(0, len(order), batch):
        index = order[start:start + batch][:chunks]
        chunk = [prompts[i] for i in index]
        width = max(len(p) for p in chunk)
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in chunk])
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in chunk])
        out = model.generate(input_ids=ids, attention_mask=mask, generation_config=config, num_return_sequences=n,
                             use_cache=True)
        widths.append(out.shape[1] - width)
        for row, i in enumerate(index):
            answers[i] = out[row * n, -spec["answer"]:].tolist()
    return widths
with torch.no_grad():
    run(1)  # warm-up
    times = []
    for _ in range(spec.get("repeats", 1)):
        start = time.perf_counter()
        new = run(None)
        times.append(time.perf_counter() - start)
print(json.dumps({"seconds": min(times), "times": times, "calls": len(new), "new_tokens": new[0],
                  "answers": answers}))
'''


def run_reference(args, model, prompts, n, pad, workdir, repeats=1):
    spec = {"reference": str(Path(args.reference).resolve()), "model": str(workdir / "model"), "prompts": prompts,
            "pad": pad, "n": n, "batch": args.batch, "noise": NOISE, "latents": LATENTS, "answer": ANSWER,
            "threads": torch.get_num_threads(), "repeats": repeats}
    (workdir / "spec.json").write_text(json.dumps(spec))
    (workdir / "child.py").write_text(REFERENCE_CHILD)
    res = subprocess.run([args.reference_python, str(workdir / "child.py"), str(workdir / "spec.json")],
                         capture_output=True, text=True, env=dict(os.environ, TRANSFORMERS_VERBOSITY="error"))
    if res.returncode != 0:
        raise SystemExit(f"the reference failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


LM_EVAL_CHILD = r"""
import json, sys, time
from lm_eval_latenttts.harness.model import LatentTTSModel
spent = []
original = LatentTTSModel.generate_until
def timed(self, requests, disable_tqdm=False):
    start = time.perf_counter()
    try:
        return original(self, requests, disable_tqdm)
    finally:
        spent.append(time.perf_counter() - start)
LatentTTSModel.generate_until = timed
from lm_eval.__main__ import cli_evaluate
sys.argv = ["lm_eval"] + sys.argv[1:]
cli_evaluate()
print(json.dumps({"rollout_seconds": sum(spent)}))
"""


def run_lm_eval(args, folder, data, n, count, workdir) -> float:
    """Seconds of ``lm_eval --model latent_tts ... --tasks latent_gsm8k``'s rollout phase (its ``generate_until``:
    lm-eval's start-up and task indexing left out) on the first ``count`` questions of ``data``."""
    sampling = "sampling=none" if n == 1 else f"sampling=noise,noise_std={NOISE}"
    model_args = f"pretrained={folder},n={n},{sampling},seed=0,max_new_tokens={ANSWER},greedy=false"
    (workdir / "lm_eval_child.py").write_text(LM_EVAL_CHILD)
    env = dict(os.environ, TRANSFORMERS_VERBOSITY="error", HF_HUB_OFFLINE="1", LATENT_TTS_DATA_GSM8K=str(data),
               OMP_NUM_THREADS=str(torch.get_num_threads()))
    res = subprocess.run([sys.executable, str(workdir / "lm_eval_child.py"), "--model", "latent_tts", "--model_args",
                          model_args, "--tasks", "latent_gsm8k", "--limit", str(count), "--batch_size",
                          str(args.batch)], capture_output=True, text=True, env=env, cwd=str(ROOT))
    if res.returncode != 0:
        raise SystemExit(f"lm_eval failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])["rollout_seconds"]


def timed_in_process(fn, model, tok, prompts, n, batch, counter, device):
    with torch.no_grad():
        counter.reset()
        start = time.perf_counter()
        got = fn(model, tok, prompts, n, batch)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - start, got


def same_answers(tok, texts, reference_tokens) -> int:
    """How many questions' greedy answers (the harness's texts, one per question) are the reference's tokens,
    cut at EOS as the harness cuts them."""
    texts = [t[0] for t in texts] if texts else [None] * len(reference_tokens)
    cut = [a[: a.index(tok.eos_token_id)] if tok.eos_token_id in a else a for a in reference_tokens]
    return sum(t == tok.decode(a, skip_special_tokens=True) for t, a in zip(texts, cut))


def keep_min(row, impl, seconds, **extra):
    runs = row.get(impl, {}).get("runs", []) + [round(seconds, 3)]
    if impl not in row or seconds < row[impl]["seconds"]:
        row[impl] = {"seconds": seconds, **extra}
    row[impl]["runs"] = runs


def cell(r):
    if r is None:
        return "-"
    calls = f" ({r['calls']} calls, {r['per_call']:.1f}/call)" if "calls" in r else ""
    return f"{r['seconds']:.2f} s{calls}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "gsm_test.json"),
                        help="a JSON list of {'question': ...} rows (GSM8K test)")
    parser.add_argument("--sizes", nargs="+", default=["2x64", "6x384"], help="models as LAYERSxHIDDEN")
    parser.add_argument("--n", type=int, nargs="+", default=[1, 16, 64], help="samples per question")
    parser.add_argument("--questions", type=int, nargs="+", default=None,
                        help="questions per N (one value, or one per --n); default 64 at N=1, 32 at 16, 8 at 64")
    parser.add_argument("--batch", type=int, default=64, help="questions per call (the harness's batch_size)")
    parser.add_argument("--impls", nargs="+", default=["harness", "padded", "reference"],
                        choices=["harness", "padded", "reference"])
    parser.add_argument("--repeats", type=int, default=2,
                        help="timed runs of each implementation, interleaved; the minimum is kept")
    parser.add_argument("--lm-eval", action="store_true",
                        help="also time the rollout phase of the lm_eval command (latent_gsm8k on the same "
                             "questions, --batch_size --batch) against the reference, interleaved")
    parser.add_argument("--reference", default=None, help="the released LatentTTS checkout (holds src/)")
    parser.add_argument("--reference-python", default=None, help="python of a virtualenv with transformers 4.52.4")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--device", default="cpu", help="torch device of harness and padded (the reference: CPU)")
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
    reference = "reference" in args.impls or args.lm_eval
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
            model.save_pretrained(workdir / "model")
            tok.save_pretrained(workdir / "model")
            for n, count in zip(args.n, questions):
                prompts = [tok(model.format_prompt(r["question"]))["input_ids"] for r in rows[:count]]
                row = {"size": size, "n": n, "questions": len(prompts),
                       "lengths": [min(map(len, prompts)), max(map(len, prompts))]}
                with torch.no_grad():  # warm-up
                    run_harness(model, tok, prompts[:2], n, args.batch)
                texts = None
                for _ in range(args.repeats):  # interleaved: load on the machine hits every column alike
                    for impl in args.impls:
                        if impl == "reference":
                            if reference:
                                got = run_reference(args, model, prompts, n, tok.pad_token_id, workdir)
                                keep_min(row, "reference", got["seconds"], calls=got["calls"],
                                         per_call=len(prompts) / got["calls"])
                                if n == 1:
                                    row["parity"] = same_answers(tok, texts, got["answers"])
                            continue
                        fn = run_harness if impl == "harness" else run_padded
                        seconds, got = timed_in_process(fn, model, tok, prompts, n, args.batch, counter, args.device)
                        keep_min(row, impl, seconds, calls=counter.calls,
                                 per_call=counter.questions / max(counter.calls, 1))
                        if impl == "harness":
                            texts = got
                            if not args.device.startswith("cuda"):
                                keep_min(row, "arithmetic", arithmetic_floor(model, counter.shapes))
                    if args.lm_eval and args.device == "cpu":
                        data = workdir / "questions.json"
                        data.write_text(json.dumps([{"question": r["question"], "answer": str(r.get("answer", 0))}
                                                    for r in rows[:count]]))
                        keep_min(row, "lm_eval", run_lm_eval(args, workdir / "model", data, n, count, workdir))
                        if reference and "reference" not in args.impls:
                            got = run_reference(args, model, prompts, n, tok.pad_token_id, workdir)
                            keep_min(row, "reference", got["seconds"], calls=got["calls"],
                                     per_call=len(prompts) / got["calls"])
                            if n == 1:
                                row["parity"] = same_answers(tok, texts, got["answers"])
                results.append(row)
                line = f"{size:>6} N={n:<3d} q={len(prompts):<4d} harness {cell(row.get('harness'))}"
                if "arithmetic" in row:
                    line += (f" | floor {row['arithmetic']['seconds']:.2f} s, achieved "
                             f"{row['arithmetic']['seconds'] / row['harness']['seconds']:.2f}")
                line += f" | padded {cell(row.get('padded'))} | reference {cell(row.get('reference'))}"
                if "harness" in row and "reference" in row:
                    line += f" | reference/harness {row['reference']['seconds'] / row['harness']['seconds']:.2f}"
                if "parity" in row:
                    line += f" | same answer tokens {row['parity']}/{len(prompts)}"
                if "lm_eval" in row:
                    line += f" | lm_eval {row['lm_eval']['seconds']:.2f} s"
                    if "reference" in row:
                        line += (f" vs reference {row['reference']['seconds']:.2f} s: "
                                 f"{row['reference']['seconds'] / row['lm_eval']['seconds']:.2f}x")
                print(line, flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"batch": args.batch, "threads": torch.get_num_threads(),
                                               "repeats": args.repeats, "load": os.getloadavg(),
                                               "rows": results}, indent=2))


if __name__ == "__main__":
    main()
