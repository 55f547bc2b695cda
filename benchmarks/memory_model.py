"""The memory model of a rollout call (``scaling.memory.call_bytes``) against the memory the call takes on CPU.

For each number of questions Q, a fresh subprocess loads the shipped model and LatentRM (or a random
COCONUT of ``--size`` LAYERSxHIDDEN with the tests' tokenizer, prompts of ``--width`` tokens), runs one
warm-up call of one question, then one call of Q questions (``scaling.rollouts.sample``: N rollouts with
dropout p=0.2 on prompt and latents, then the RM's scores), and reports the growth of its peak resident set
(``ru_maxrss``) over that call beside the model's prediction of the same growth for CPU (flash prompt
attention, math one-token steps): ``call_bytes`` of Q questions minus that of the warm-up's one, whose peak
the process had already reached; the whole call's prediction is printed too.  Peak RSS is an upper bound of the call's peak allocation (the allocator's caching and
fragmentation count too) and includes nothing torch frees before the peak; torch has no CPU allocator
statistics to read instead.  Usage: ``python benchmarks/memory_model.py [--questions 8 32 128] [--n 16]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(questions: int, n: int, size: str | None, width: int) -> dict:
    import torch

    sys.path.insert(0, str(ROOT / "tests"))
    from lm_eval_latenttts.scaling.memory import call_bytes
    from lm_eval_latenttts.scaling import rollouts

    torch.set_num_threads(1)
    if size:
        import hf_modeling
        from tiny_models import make_tokenizer

        tok = make_tokenizer()
        layers, hidden = (int(x) for x in size.lower().split("x"))
        ids = {t: tok.convert_tokens_to_ids(t) for t in ("<|latent|>", "<|start-latent|>", "<|end-latent|>")}
        model = hf_modeling.COCONUTGPT2(hf_modeling.CoconutConfig(
            vocab_size=len(tok), n_positions=1024, n_layer=layers, n_embd=hidden, n_head=max(1, hidden // 64),
            latent_id=ids["<|latent|>"], latent_start_id=ids["<|start-latent|>"],
            latent_end_id=ids["<|end-latent|>"], eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
            bos_token_id=tok.eos_token_id, latent_length=6)).eval()
        rm = None
        prompt = tok(model.format_prompt("x" * (width - 2)))["input_ids"][-width:]
    else:
        from hf_modeling import AutoLatentModel, load_latent_tokenizer
        from lm_eval_latenttts.checkpoints import DEFAULT_MODEL_DIR, shipped_rm
        from lm_eval_latenttts.data import arith

        model = AutoLatentModel.from_pretrained(str(DEFAULT_MODEL_DIR)).eval()
        tok = load_latent_tokenizer(str(DEFAULT_MODEL_DIR), model.config)
        rm = AutoLatentModel.from_pretrained(str(shipped_rm())).eval()
        prompt = model.encode_prompt(tok, arith.load_split("test")[0]["question"])
    config = model.latent_generation_config(latent_sampling="dropout", dropout_p=0.2, num_return_sequences=n,
                                            seed=0, max_new_tokens=8, eos_token_id=[-1],
                                            pad_token_id=tok.pad_token_id)
    rollouts.sample(model, tok, [prompt], config, rm)  # warm-up
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    rollouts.sample(model, tok, [prompt] * questions, config, rm)
    measured = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    width = rollouts.left_pad([prompt], 0, "cpu")[0].shape[1]
    predicted = call_bytes(model, rm, config, questions, width) - call_bytes(model, rm, config, 1, width)
    return {"questions": questions, "n": n, "width": len(prompt), "predicted": predicted, "measured": measured,
            "predicted_call": call_bytes(model, rm, config, questions, width)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument("--n", type=int, default=16, help="rollouts per question")
    parser.add_argument("--size", default=None, help="a random COCONUT LAYERSxHIDDEN instead of the shipped model")
    parser.add_argument("--width", type=int, default=200, help="prompt tokens (with --size)")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child, args.n, args.size, args.width)))
        return
    print(f"{'questions':>9} {'N':>4} {'width':>5} {'call MB':>8} {'predicted growth MB':>20} "
          f"{'peak RSS growth MB':>19} {'ratio':>6}")
    for q in args.questions:
        cmd = [sys.executable, __file__, "--child", str(q), "--n", str(args.n), "--width", str(args.width)]
        if args.size:
            cmd += ["--size", args.size]
        res = subprocess.run(cmd, capture_output=True, text=True,
                             env=dict(os.environ, TRANSFORMERS_VERBOSITY="error", HF_HUB_OFFLINE="1"))
        if res.returncode != 0:
            sys.exit(res.stderr[-3000:])
        r = json.loads(res.stdout.strip().splitlines()[-1])
        print(f"{r['questions']:9d} {r['n']:4d} {r['width']:5d} {r['predicted_call'] / 2**20:8.1f} "
              f"{r['predicted'] / 2**20:20.1f} "
              f"{r['measured'] / 2**20:19.1f} {r['measured'] / r['predicted'] if r['predicted'] else float('nan'):6.2f}",
              flush=True)


if __name__ == "__main__":
    main()
