"""What ``latent_tts`` sets up before the first request: processes, device, dtype, checkpoints.

Kept apart from the request hooks in ``model`` so that each reads in one go.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch

from lm_eval_latenttts.harness.arguments import LatentTTSArgumentError

logger = logging.getLogger("lm_eval.latent_tts")
TINY_MODEL_PARAMETERS = 20_000_000


def shipped_defaults(arg_dict: dict) -> dict:
    """No ``pretrained`` key: the shipped model, and the shipped LatentRM unless an ``rm`` key is given.

    ``rm=none`` (the CLI's text, or the ``None`` that lm-eval's parser makes of it
    in ``simple_evaluate``) is given: no LatentRM, as its value says; only a
    missing key means the shipped one.  ``pretrained=none`` is refused when the
    options are parsed.  The paths are written into ``arg_dict`` (the dict lm-eval
    logs and names its output folder after).  Their recommended settings come
    from the checkpoints' own ``generation_config.json``.
    """
    from lm_eval_latenttts.checkpoints import shipped_model, shipped_rm

    if "pretrained" in arg_dict:
        return arg_dict
    try:
        arg_dict["pretrained"] = str(shipped_model())
    except FileNotFoundError as err:
        raise FileNotFoundError(
            f"{err} Or pass model_args pretrained=<Hub id or folder>, e.g. pretrained=ModalityDance/latent-tts-coconut."
        ) from None
    if "rm" not in arg_dict and shipped_rm() is not None:
        arg_dict["rm"] = str(shipped_rm())
    return arg_dict


def process_group() -> tuple:
    """(accelerator, rank, world size): accelerate's when several processes were launched, else (None, 0, 1)."""
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        from accelerate import Accelerator

        accelerator = Accelerator()
        if accelerator.num_processes > 1:
            return accelerator, accelerator.process_index, accelerator.num_processes
    return None, 0, 1


def pick_device(device: str | None, harness_default: bool = False) -> torch.device:
    """``device``, else the best available one (said once at INFO).

    lm-eval passes ``device="cuda:0"`` to every model when the user gave no
    ``--device``; that default (``harness_default``) means "pick one" here,
    so a CPU machine is not warned about a device nobody asked for.
    """
    if device in (None, "auto") or (harness_default and not torch.cuda.is_available()):
        chosen = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        logger.info("latent_tts: running on %s (pass device=... in --model_args to choose).", chosen)
        return chosen
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise LatentTTSArgumentError(
            f"latent_tts model_args: device={device!r} was requested but CUDA is not available; "
            "pass device=cpu or leave device out to pick one automatically."
        )
    try:
        return torch.device(device)
    except (RuntimeError, ValueError) as err:
        raise LatentTTSArgumentError(f"latent_tts model_args: device={device!r} is not a torch device ({err}).")


CUDA_MAX_BATCH_SIZE = 512  # questions per call; on an H200 all 500 shipped questions in one call were fastest
CPU_MAX_BATCH_SIZE = 64
CPU_ROWS_PER_CALL = 128  # the CPU default: about this many rollouts per call


def pick_batch_size(batch_size, max_batch_size: int | None, device: torch.device, n: int = 1) -> tuple:
    """(batch_size, max_batch_size) for ``device`` when they were not given (``None``); ``n``: the run's
    rollouts per question.

    On a GPU more questions per call is faster: the shipped model's 500 test
    questions x 16 rollouts took 2.11 s at 8 questions per call, 0.27 s at 64
    and 0.09 s at 500 (one H200, fp32; measured for the issue, not in this
    project, which has no GPU).  So on CUDA, with no ``batch_size``, it is
    ``auto`` up to 512 questions per call: the memory model
    (``harness.memory``) sizes each group's calls to the free device memory,
    and a call that still runs out of memory is halved.  On a CPU the
    per-call overhead (Python, small matrix products, the LatentRM's pass)
    is amortised over about ``CPU_ROWS_PER_CALL`` rollouts per call
    (``max(1, 128 // n)`` questions, at most ``CPU_MAX_BATCH_SIZE``): for the
    shipped model at N=16, 8 questions per call took the rollout phase about
    1.9x less CPU time than 1 (benchmarks in the issue-25 note), while 64
    questions per call were slower again (the prompt pass's activations
    leave the caches).  Results do not depend on the choice.
    """
    cuda = torch.device(device).type == "cuda"
    if max_batch_size is None:
        max_batch_size = CUDA_MAX_BATCH_SIZE if cuda else CPU_MAX_BATCH_SIZE
    if batch_size is None:
        batch_size = "auto" if cuda else max(1, min(max_batch_size, CPU_ROWS_PER_CALL // max(1, n)))
    return batch_size, max_batch_size


def pick_dtype(dtype: str, device: torch.device) -> torch.dtype | str:
    if dtype == "auto":
        return torch.float32 if device.type == "cpu" else "auto"
    return getattr(torch, dtype)


def single_thread_for_tiny_cpu_models(model: torch.nn.Module, device: torch.device) -> None:
    """One torch thread for a tiny model on CPU, unless the user chose (OMP_NUM_THREADS).

    Its matrices are so small that intra-op threads only add synchronisation:
    on a 2-core machine with any other load, 2 threads made the shipped 0.8M
    parameter model about 100x slower (2.5 s instead of 0.025 s per question).
    """
    if device.type != "cpu" or "OMP_NUM_THREADS" in os.environ:
        return
    if sum(p.numel() for p in model.parameters()) < TINY_MODEL_PARAMETERS and torch.get_num_threads() > 1:
        logger.info("latent_tts: tiny model on CPU, using 1 torch thread (set OMP_NUM_THREADS to choose).")
        torch.set_num_threads(1)


def _json_object(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise LatentTTSArgumentError(f"latent_tts model_args: cannot read {path} ({err}); fix or remove it.") from None
    if not isinstance(data, dict):
        raise LatentTTSArgumentError(f"latent_tts model_args: {path} is not a JSON object; fix or remove it.")
    return data


def load_models(pretrained: str, rm_path: str | None, revision: str | None, dtype: torch.dtype | str,
                device: torch.device) -> tuple:
    """(backbone, tokenizer, LatentRM or None, the run's base settings) for ``pretrained`` and ``rm_path``.

    The base settings are the backbone's ``generation_config`` (the checkpoint's
    recommended ones); an RM checkpoint may recommend the aggregation it was
    tuned for in its own ``generation_config.json`` (``aggregate``), used when
    the backbone's settings name none.
    """
    from hf_modeling import AutoLatentModel, LatentGenerationConfig, load_latent_tokenizer, resolve_checkpoint
    from hf_modeling.modeling_latent_rm import LatentRMMixin

    model = AutoLatentModel.from_pretrained(pretrained, revision=revision, dtype=dtype)
    if isinstance(model, LatentRMMixin):
        raise LatentTTSArgumentError(
            f"latent_tts model_args: pretrained={pretrained!r} is a LatentRM ({type(model).__name__}), which scores "
            "latent steps but cannot answer: pass it as rm=<it> and a latent backbone (COCONUT, CODI, CoLaR) as "
            "pretrained=, or leave pretrained out for the shipped model.")
    model.to(device).eval()
    single_thread_for_tiny_cpu_models(model, device)
    tokenizer = load_latent_tokenizer(pretrained, model.config, revision=revision)
    base = LatentGenerationConfig.from_generation_config(model.generation_config)
    if rm_path is None:
        return model, tokenizer, None, base
    rm = AutoLatentModel.from_pretrained(rm_path, revision=revision, dtype=dtype)
    if not isinstance(rm, LatentRMMixin):
        raise LatentTTSArgumentError(
            f"latent_tts model_args: rm={rm_path!r} is a {type(rm).__name__}, not a LatentRM "
            "(a token-classification model with architectures COCONUTGPT2ForTokenClassification or a Llama RM)."
        )
    try:
        rm.check_backbone(model)
    except ValueError as err:
        raise LatentTTSArgumentError(
            f"latent_tts model_args: the RM {rm_path!r} does not match the backbone {pretrained!r}: {err}"
        ) from err
    folder = Path(resolve_checkpoint(rm_path, revision=revision))
    if base.aggregate is None and (folder / "generation_config.json").is_file():
        # one value of the file, checked with the run's settings (LatentTTSModel._resolve)
        base.aggregate = _json_object(folder / "generation_config.json").get("aggregate")
    return model, tokenizer, rm.to(device).eval(), base


__all__ = ["load_models", "pick_batch_size", "pick_device", "pick_dtype", "process_group", "shipped_defaults"]
