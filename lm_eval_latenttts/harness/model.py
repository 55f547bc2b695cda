"""``LatentTTSModel``: latent reasoning models with parallel test-time scaling as the lm-eval model ``latent_tts``.

``lm_eval --model latent_tts --model_args n=8,sampling=dropout --tasks latent_arith``

An lm-eval adapter around the test-time-scaling engine (``scaling.engine``).
Every ``generate_until`` request is one question, and goes one way: its
``gen_kwargs`` become a ``scaling.plan.Plan`` (``harness.settings``: resolved
once per distinct setting, after the run's ``model_args``), its context the
bare question (``harness.context``), both a ``scaling.engine.Job``; the engine
answers every job with a typed ``scaling.result.QuestionResult``, which is the
response as JSON (``to_json``) for the ``latent_*`` tasks
(``generation_kwargs: latent_tts_payload: true``), whose ``process_results``
reads it back (``from_json``) into metric rows; any other generation task
(e.g. the built-in ``gsm8k`` with ``--num_fewshot 0``) gets ``"#### <answer>"``.

The model gets the bare question (the document's question, its template's
labels such as ``"Question: ...\nAnswer:"`` dropped, known from what lm-eval
says it built the context from); a context with more (few-shot examples,
``--system_instruction``, a description, an instruction in ``doc_to_text``) is
an error: latent reasoning models are evaluated zero-shot.  A task's
``repeats: K`` hands the model K copies of a request: copy r draws samples
r*N .. r*N+N-1 of the question (N = n), so the K responses are disjoint
samples, each a function of (seed, question, settings, r); the greedy row is
the same in every copy.  ``--use_cache`` is refused (``set_cache_hook``).
Documents that cannot run for a named reason (``scaling.engine.DocError``) are
scored wrong and counted per task (``latent_tts.failed_documents``); a task
none of whose documents can run is refused before any compute.
See :mod:`lm_eval_latenttts.keys` for the settings.
"""

from __future__ import annotations

import logging
import secrets

import torch
from lm_eval.api.instance import Instance
from lm_eval.api.model import LM

from lm_eval_latenttts.harness.arguments import LatentTTSArgumentError, parse_model_args
from lm_eval_latenttts.harness.context import bare_question
from lm_eval_latenttts.harness.settings import Settings
from lm_eval_latenttts.harness.setup import (
    load_models,
    pick_batch_size,
    pick_device,
    pick_dtype,
    process_group,
    shipped_defaults,
)
from lm_eval_latenttts.publishing.model_info import checkpoint_info, data_overrides
from lm_eval_latenttts.scaling.engine import Engine, Job
from lm_eval_latenttts.scaling.memory import memory_sizer
from lm_eval_latenttts.scaling.strategies import DrawMode

# under lm-eval's logger, so that INFO lines show at the harness's default verbosity
logger = logging.getLogger("lm_eval.latent_tts")

HARNESS_DEFAULT_DEVICE = "cuda:0"  # what lm-eval's EvaluatorConfig passes when no --device is given
HARNESS_DEFAULT_BATCH_SIZE = 1  # ... and when no --batch_size is given (an int; the CLI's own value is a str)
DRAWN_SEEDS = 2**31 - 1  # seed=none draws a seed in 1 .. 2**31 - 1 (never 0, the default seed; short to type)


def response(result, payload: bool) -> str:
    """A request's response: the typed result as JSON, or ``#### <answer>`` (the chosen candidate's text when no
    answer could be extracted; "" for a document that could not run)."""
    if payload:
        return result.to_json()
    if result.error is not None:
        return ""
    if result.selection.answer is not None:
        return f"#### {result.selection.answer}"
    chosen = result.selection.chosen
    return result.texts[chosen if chosen is not None else 0]


class LatentTTSModel(LM):
    """lm-eval model ``latent_tts`` (see the module docstring and :mod:`lm_eval_latenttts.harness.arguments`)."""

    def __init__(self, _harness_device: bool = False, **kwargs) -> None:
        super().__init__()
        self.load_options, overrides = parse_model_args(shipped_defaults(dict(kwargs)))
        self._warned: set[str] = set()
        self._task_settings: dict[str, dict] = {}
        self._failed: dict[str, int] = {}  # task -> documents answered as failed (all processes), see generate_until
        self.accelerator, self._rank, self._world_size = process_group()
        device = self.accelerator.device if self.accelerator is not None else pick_device(
            self.load_options["device"], harness_default=_harness_device)
        self._device = device
        self._create_model(pick_dtype(self.load_options["dtype"], device))
        # the run's settings: the checkpoint's recommended ones, then model_args (checked once, here); the seed
        # of seed=none (model_args or gen_kwargs) is drawn once, the same on every process
        drawn = self._all_processes(secrets.randbelow(DRAWN_SEEDS) + 1)[0]
        self.settings = Settings(self.model, self.tokenizer, self.rm is not None, self.base_config, overrides, drawn,
                                 self._warn_once)
        sizes = pick_batch_size(self.load_options["batch_size"], self.load_options["max_batch_size"], device,
                                self.run_config.num_return_sequences)
        self.load_options["batch_size"], self.load_options["max_batch_size"] = sizes
        # on CUDA, batch_size=auto is sized per group by the memory model of a call (scaling.memory)
        sizer = memory_sizer(self.model, self.rm, device) if device.type == "cuda" else None
        self.engine = Engine(self.model, self.tokenizer, self.rm, *sizes, sizer=sizer)

    @property
    def run_config(self):
        """The run's resolved settings (the checkpoint's, then model_args)."""
        return self.settings.run_config

    # ------------------------------------------------------------------ hooks
    def _create_model(self, dtype) -> None:
        """Load the backbone, its tokenizer and the optional LatentRM (exactly; see hf_modeling.loading)."""
        self.pretrained = self.load_options["pretrained"]
        self.model, self.tokenizer, self.rm, self.base_config = load_models(
            self.pretrained, self.load_options["rm"], self.load_options["revision"], dtype, self._device)

    # ------------------------------------------------------------------ requests
    def _job(self, index: int, request, repeat: int = 0) -> Job:
        """The job of a request; ``repeat`` r (lm-eval's r-th copy of it) draws samples r*N .. r*N+N-1."""
        context, gen_kwargs = request.args[0], (request.args[1] if len(request.args) > 1 else {}) or {}
        plan = self.settings.plan_of(gen_kwargs)
        where = f"document {getattr(request, 'doc_id', None)} of task {getattr(request, 'task_name', None)}"
        question = bare_question(context, getattr(request, "doc", None), where)
        if repeat and plan.mode is DrawMode.SEARCH and plan.config.samples:
            raise LatentTTSArgumentError(
                f"latent_tts: the task repeats each request (repeats > 1), but aggregate={plan.strategy.name} has no "
                "sample index to give each repeat samples of its own (every repeat would be the same search). Use "
                "repeats: 1 with it, or n=<K> with another aggregate instead of repeats.")
        if repeat and not plan.config.samples:
            self._warn_once("deterministic_repeats", "latent_tts: the task repeats each request, but with "
                            "sampling=none every repeat is the same deterministic answer.")
        return Job(index, self.model.encode_prompt(self.tokenizer, question), plan,
                   sample_offset=repeat * plan.config.num_return_sequences, question=question)

    def generate_until(self, requests: list[Instance], disable_tqdm: bool = False) -> list[str]:
        # every request is parsed and checked first: bad gen_kwargs, a few-shot context or a task that no
        # document of can run fail before any compute
        jobs = [self._job(i, request, repeat) for i, (request, repeat) in
                enumerate(zip(requests, repeat_indices(requests)))]
        failed = self.engine.failures(jobs)
        self._count_failed(requests, failed)
        self._note_task_settings(requests, jobs)
        results = self.engine.run(jobs, failed, progress=not (disable_tqdm or self.rank != 0))
        responses = [response(result, job.plan.payload) for job, result in zip(jobs, results)]
        for request, text in zip(requests, responses):
            self.cache_hook.add_partial("generate_until", request.args, text)
        return responses

    def _count_failed(self, requests, failed: dict[int, str]) -> None:
        """Count each task's documents that cannot run (over all processes; ``failed_documents`` in the results),
        and refuse a task none of whose documents can run: that is a setting, not a score of 0."""
        tally: dict[str, list] = {}  # task -> [documents, failed documents]
        for index, request in enumerate(requests):
            task, doc = getattr(request, "task_name", None), getattr(request, "doc_id", None)
            counts = tally.setdefault(str(task), [set(), set(), None])
            counts[0].add((doc, index) if doc is None else doc)
            if index in failed:
                counts[1].add((doc, index) if doc is None else doc)
                counts[2] = counts[2] or failed[index]
        totals: dict[str, list] = {}
        for part in self._all_processes({task: (len(docs), len(bad), reason) for task, (docs, bad, reason)
                                         in tally.items()}):
            for task, (docs, bad, reason) in part.items():
                total = totals.setdefault(task, [0, 0, None])
                total[0], total[1], total[2] = total[0] + docs, total[1] + bad, total[2] or reason
        for task, (docs, bad, reason) in sorted(totals.items()):
            if docs and bad == docs:
                raise LatentTTSArgumentError(
                    f"latent_tts: no document of task {task} can run with these settings ({reason}); all {docs} "
                    "would be scored wrong. Lower latent_length, or use a model with a longer context window.")
            if bad:
                logger.warning("latent_tts: %d of %d documents of task %s cannot run (%s, ...); they are scored "
                               "wrong and counted in the results (latent_tts.failed_documents).", bad, docs, task,
                               reason)
            self._failed[task] = self._failed.get(task, 0) + bad

    def _all_processes(self, obj) -> list:
        """``obj`` of every process (each process gets all of them)."""
        if self.world_size <= 1:
            return [obj]
        gathered = [None] * self.world_size
        torch.distributed.all_gather_object(gathered, obj)
        return gathered

    # ------------------------------------------------------------------ lm-eval plumbing
    def set_cache_hook(self, cache_hook) -> None:
        """Refuse ``--use_cache``: lm-eval's cache keys a response on the request's text and ``gen_kwargs`` only.

        A cached answer would come back for another seed, n, sampling mode, RM or checkpoint, and all K
        repeats of a request (one key) would get one response, while the results name the new settings.
        """
        if getattr(cache_hook, "dbdict", None) is not None:
            raise LatentTTSArgumentError(
                "latent_tts does not support --use_cache: lm-eval's response cache is keyed only on the prompt and "
                "gen_kwargs, not on the model's settings (seed, n, sampling, rm, checkpoint, dtype) nor on the "
                "repeat index, so it would return answers computed under other settings. Run without --use_cache: "
                "a latent_tts result is a function of (seed, question, settings) and reruns give the same numbers.")
        super().set_cache_hook(cache_hook)

    @classmethod
    def create_from_arg_obj(cls, arg_dict: dict, additional_config: dict | None = None) -> LatentTTSModel:
        """As lm-eval's, but ``--model_args`` wins over the CLI's generic batch_size/device.

        Without ``pretrained`` the shipped model (and its LatentRM) run; the
        resolved paths are written back into ``arg_dict`` (the dict lm-eval
        logs), so results and the output folder name the checkpoints used.
        """
        extra = {k: v for k, v in (additional_config or {}).items() if v is not None and k not in arg_dict}
        if _is_harness_default_batch_size(extra.get("batch_size")):
            del extra["batch_size"]  # no --batch_size given: pick one for the device (setup.pick_batch_size)
        shipped_defaults(arg_dict)
        _say_seed_is_model_args(arg_dict)
        harness_device = extra.get("device") == HARNESS_DEFAULT_DEVICE
        return cls(**arg_dict, **extra, _harness_device=harness_device)

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None) -> LatentTTSModel:
        from lm_eval.utils import simple_parse_args_string

        return cls.create_from_arg_obj(simple_parse_args_string(arg_string), additional_config)

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def batch_sizes(self) -> dict:
        return self.engine.batch_sizes

    @property
    def tokenizer_name(self) -> str:
        return str(self.pretrained).replace("/", "__")

    def all_gather(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor if self.world_size <= 1 else self.accelerator.gather(tensor)

    def gather_object(self, obj: object, dst: int = 0) -> list | None:
        if self.world_size <= 1:
            return [obj]
        result = [None] * self.world_size if self.rank == dst else None
        torch.distributed.gather_object(obj=obj, object_gather_list=result, dst=dst)
        return result

    def barrier(self) -> None:
        if self.world_size > 1:
            self.accelerator.wait_for_everyone()

    def _note_task_settings(self, requests, jobs) -> None:
        """Remember each task's settings (the run's, after its ``gen_kwargs``) for ``get_model_info``."""
        for request, job in zip(requests, jobs):
            task = getattr(request, "task_name", None)
            if task is not None and task not in self._task_settings:
                self._task_settings[task] = job.plan.settings()

    def get_model_info(self) -> dict:
        """What lm-eval writes into the results' ``config``: the keys ``HFLM`` writes for the backbone
        (``model_num_parameters``, ``model_dtype``, ``model_revision``, ``model_sha``) and the same for the
        LatentRM (``rm_*``), read by leaderboard back-ends, plus the ``latent_tts`` block: the checkpoints,
        their weights' sha256 (``export-results`` matches a model folder by it), the run's settings, each
        task's settings and the local data files the tasks were pointed at."""
        backbone = checkpoint_info(self.model, self.pretrained, self.load_options["revision"])
        info = {
            "pretrained": str(self.pretrained),
            "backbone": self.model.latent_kind,
            "backbone_class": type(self.model).__name__,
            "num_parameters": backbone["num_parameters"],
            "dtype": backbone["dtype"],
            "weights_sha256": backbone["weights_sha256"],
            "rm": self.load_options["rm"],
            "rm_class": type(self.rm).__name__ if self.rm is not None else None,
            **self.settings.plan(self.run_config).settings(),
            "seed_drawn": self.settings.seed_drawn,  # seed=none: a seed (the one recorded) was drawn for the run
            "batch_size": self.load_options["batch_size"],
            "tasks": dict(sorted(self._task_settings.items())),
            # per task, documents that could not run (a named reason, e.g. a prompt too long for the context
            # window), scored wrong; export-results refuses a task with any
            "failed_documents": dict(sorted(self._failed.items())),
            "data_files": data_overrides(),
        }
        top = {f"model_{k}": backbone[k] for k in ("num_parameters", "dtype", "revision", "sha")}
        if self.rm is not None:
            rm = checkpoint_info(self.rm, self.load_options["rm"], self.load_options["revision"])
            info["rm_weights_sha256"] = rm["weights_sha256"]
            top.update({f"rm_{k}": rm[k] for k in ("num_parameters", "dtype", "revision", "sha")})
        return {"latent_tts": info, "model_name": str(self.pretrained), **top}

    def loglikelihood(self, requests: list[Instance]) -> list:
        raise NotImplementedError(
            "latent_tts only supports generate_until tasks (e.g. latent_gsm8k, latent_arith, or gsm8k with "
            "--num_fewshot 0): a latent reasoning model answers after reasoning in continuous space and has no "
            "token log-likelihoods to score multiple-choice or perplexity tasks."
        )

    def loglikelihood_rolling(self, requests: list[Instance]) -> list:
        raise NotImplementedError(
            "latent_tts only supports generate_until tasks; loglikelihood_rolling (perplexity) is not available "
            "for latent reasoning models."
        )

    def apply_chat_template(self, chat_history: list[dict], add_generation_prompt: bool = True) -> str:
        raise NotImplementedError(
            "latent_tts does not use chat templates: the model applies its backbone's own prompt format. "
            "Run without --apply_chat_template."
        )

    def _warn_once(self, key: str, msg: str, *args) -> None:
        if key not in self._warned:
            self._warned.add(key)
            logger.warning(msg, *args)


def repeat_indices(requests: list) -> list[int]:
    """Which copy of its request each entry is: lm-eval's ``repeats: K`` passes one ``Instance`` object K times."""
    seen: dict[int, int] = {}
    indices = []
    for request in requests:
        indices.append(seen.get(id(request), 0))
        seen[id(request)] = indices[-1] + 1
    return indices


def _say_seed_is_model_args(arg_dict: dict) -> None:
    """Warn when the ``lm_eval`` command line changed ``--seed`` but ``model_args`` names no ``seed``.

    ``--seed`` seeds Python, NumPy, torch's global generator and few-shot sampling; latent_tts's samples are
    keyed by ``seed`` in ``model_args`` only (a function of (seed, question, j)), so ``--seed 5`` alone gives
    the numbers of the default seed.  lm-eval seeds torch (its default 1234) before it creates the model.
    """
    import sys

    from lm_eval.defaults import DEFAULT_OTHER_SEED

    given = any(arg == "--seed" or arg.startswith("--seed=") for arg in sys.argv[1:])  # the lm_eval CLI's flag
    torch_seed = torch.initial_seed()
    if given and "seed" not in arg_dict and torch_seed != DEFAULT_OTHER_SEED:
        logger.warning("latent_tts: lm-eval's --seed set torch's seed to %d, but latent_tts draws its samples from "
                       "model_args seed (not given: the checkpoint's, default 0), so they are unchanged. Pass "
                       "--model_args seed=%d to change them.", torch_seed, torch_seed)


def _is_harness_default_batch_size(value) -> bool:
    """lm-eval's CLI passes the int 1 when no ``--batch_size`` was given (its config default); a given
    ``--batch_size 1`` arrives as the string ``"1"``."""
    return isinstance(value, int) and not isinstance(value, bool) and value == HARNESS_DEFAULT_BATCH_SIZE


def _register() -> None:
    """Registering on import covers processes without the .pth hook (e.g. running from a source tree); the
    contexts of lm-eval's tasks carry what they were built from from now on (``harness.context.install``): the
    model is created before any task builds its requests."""
    from lm_eval_latenttts.harness.context import install
    from lm_eval_latenttts.harness.plugin import register_model

    register_model()
    install()


_register()
