"""The main job's time: ``lm_eval --model latent_tts --tasks latent_arith`` (the README's command), its rollout phase
(``generate_until``: lm-eval's start-up and task indexing left out) and its whole run, for one or more source
trees, interleaved.

``--trees`` names source folders (``.`` by default: this checkout); another tree is a plain copy of the
project's files (``git archive main | tar -x -C /tmp/main-src``) and runs from there, with its own ``tasks/``,
so that two versions compare on the same machine in the same minutes.  Each run is a fresh ``lm_eval``
process; ``--repeats`` rounds over the trees, the minimum kept; the load average is printed with every run.
With ``--log-samples DIR`` each run writes ``--log_samples`` there (``DIR/<tree index>-<round>``).
Usage: ``python benchmarks/main_job.py --trees /tmp/main-src . --repeats 2 [--model-args adaptive=true]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, os, sys, time
tree = os.path.abspath(sys.argv[1])
if os.path.abspath(tree) != os.path.abspath(sys.argv[2]):  # another tree: import it, not the installed package
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f)]
    sys.path.insert(0, tree)
    for name in [m for m in sys.modules if m.split(".")[0] in ("hf_modeling", "lm_eval_latenttts")]:
        del sys.modules[name]
start = time.perf_counter()
from lm_eval_latenttts.harness.model import LatentTTSModel
spent = []
original = LatentTTSModel.generate_until
def timed(self, requests, disable_tqdm=False):
    t, c = time.perf_counter(), time.process_time()
    try:
        return original(self, requests, disable_tqdm)
    finally:
        spent.append((time.perf_counter() - t, time.process_time() - c))
LatentTTSModel.generate_until = timed
from lm_eval.__main__ import cli_evaluate
sys.argv = ["lm_eval", "--include_path", os.path.join(tree, "tasks")] + sys.argv[3:]
cli_evaluate()
print("MAIN_JOB " + json.dumps({"rollout_s": sum(s[0] for s in spent), "rollout_cpu_s": sum(s[1] for s in spent),
                                "total_s": time.perf_counter() - start, "load": os.getloadavg()[0]}))
"""

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trees", nargs="+", default=["."], help="source folders to time (default: this checkout)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--model-args", default=None, help="passed as --model_args")
    parser.add_argument("--batch-size", default=None, help="passed as --batch_size")
    parser.add_argument("--limit", type=int, default=None, help="passed as --limit (smoke runs)")
    parser.add_argument("--log-samples", default=None, metavar="DIR", help="write --log_samples under DIR")
    args = parser.parse_args()
    best: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        child = Path(tmp) / "child.py"
        child.write_text(CHILD)
        for round_ in range(args.repeats):
            for index, tree in enumerate(args.trees):
                cmd = [sys.executable, str(child), str(Path(tree).resolve()), str(ROOT), "--model", "latent_tts",
                       "--tasks", "latent_arith"]
                for flag, value in (("--model_args", args.model_args), ("--batch_size", args.batch_size),
                                    ("--limit", args.limit)):
                    if value is not None:
                        cmd += [flag, str(value)]
                if args.log_samples:
                    cmd += ["--log_samples", "--output_path", str(Path(args.log_samples) / f"{index}-{round_}")]
                res = subprocess.run(cmd, capture_output=True, text=True, cwd=str(ROOT),
                                     env=dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error"))
                if res.returncode != 0:
                    sys.exit(res.stderr[-3000:])
                got = json.loads(next(line for line in res.stdout.splitlines()
                                      if line.startswith("MAIN_JOB "))[len("MAIN_JOB "):])
                print(f"{tree}: rollouts {got['rollout_s']:.2f} s ({got['rollout_cpu_s']:.2f} s CPU), whole run "
                      f"{got['total_s']:.2f} s, load {got['load']:.1f}", flush=True)
                for key in ("rollout_s", "rollout_cpu_s", "total_s"):
                    best.setdefault(tree, {})[key] = min(best.get(tree, {}).get(key, float("inf")), got[key])
    for tree, got in best.items():
        print(f"min {tree}: rollouts {got['rollout_s']:.2f} s ({got['rollout_cpu_s']:.2f} s CPU), whole run "
              f"{got['total_s']:.2f} s")


if __name__ == "__main__":
    main()
