"""``LatentTTSModel``: latent reasoning models with parallel test-time scaling as the lm-eval model ``latent_tts``.

``lm_eval --model latent_tts --model_args n=8,sampling=dropout --tasks latent_arith``

Every ``generate_until`` request is one question, and goes one way:
``_setting`` resolves its ``gen_kwargs`` (after the run's ``model_args``) into a
``batching.Setting`` once per distinct setting (``_resolve``: the one
validation; equal settings share one); ``BatchRunner`` groups the jobs
(lm-eval's ``Collator``) and draws them, in rounds with adaptive sampling
(``scaling.adaptive``), through ``Rollouts``, the runner's answerer: it draws
candidates (``scaling.rollouts``), chooses the answer (``scaling.aggregation``)
and writes the response.  Batches group questions by setting and padded prompt width
(see ``batching``).

What a request gets back depends on the task: the ``latent_*`` tasks
(``generation_kwargs: latent_tts_payload: true``) get a ``scaling.result.QuestionResult``
as JSON: every candidate's extracted answer, RM score and which one was chosen,
the greedy decode's answer, the rollouts and latent forward steps spent and why
sampling stopped, which their ``process_results`` turns into metric rows; any other
generation task (e.g. the built-in ``gsm8k`` with ``--num_fewshot 0``) gets
``"#### <answer>"``.
The model gets the bare question (``harness.context``: the document's
question, its template's labels such as ``"Question: ...\\nAnswer:"`` dropped,
known from what lm-eval says it built the context from); a context with more
(few-shot examples, ``--system_instruction``, a description, an instruction in
``doc_to_text``) is an error: latent reasoning models are evaluated zero-shot.
A task's ``repeats: K`` hands the model K copies of a request: copy r draws
samples r*N .. r*N+N-1 of the question (N = n), so the K responses are
disjoint samples, each a function of (seed, question, settings, r); the greedy
row is the same in every copy.  ``--use_cache`` is refused (``set_cache_hook``).
See :mod:`lm_eval_latenttts.harness.arguments`.
"""

from __future__ import annotations

import logging
import secrets

import torch
from lm_eval.api.instance import Instance
from lm_eval.api.model import LM

from hf_modeling.answers import normalize_number, number_text
from hf_modeling.generation_config import SettingError
from hf_modeling.latent_generation import PromptTooLongError
from lm_eval_latenttts.harness.arguments import (
    LatentTTSArgumentError,
    SHORT_NAMES,
    parse_model_args,
    request_overrides,
)
from lm_eval_latenttts.harness.batching import BatchRunner, DocError, Job, Setting, failures
from lm_eval_latenttts.harness.context import bare_question
from lm_eval_latenttts.harness.setup import (
    load_models,
    pick_batch_size,
    pick_device,
    pick_dtype,
    process_group,
    shipped_defaults,
)
from lm_eval_latenttts.publishing.model_info import scaling_settings
from lm_eval_latenttts.scaling import rollouts
from lm_eval_latenttts.scaling.adaptive import round_size, rounds_apply
from lm_eval_latenttts.scaling.aggregation import AGGREGATIONS, select
from lm_eval_latenttts.scaling.result import FAILED, CandidateRow, QuestionResult

# under lm-eval's logger, so that INFO lines show at the harness's default verbosity
logger = logging.getLogger("lm_eval.latent_tts")

HARNESS_DEFAULT_DEVICE = "cuda:0"  # what lm-eval's EvaluatorConfig passes when no --device is given
HARNESS_DEFAULT_BATCH_SIZE = 1  # ... and when no --batch_size is given (an int; the CLI's own value is a str)
DRAWN_SEEDS = 2**31 - 1  # seed=none draws a seed in 1 .. 2**31 - 1 (never 0, the default seed; short to type)


def canonical_answer(answer) -> str | None:
    """An extracted answer in canonical text form (numbers as exact numbers: '1,234.0' -> '1234')."""
    if answer is None:
        return None
    number = normalize_number(answer)
    return str(answer) if number is None else number_text(number)


class Rollouts:
    """The runner's ``Answerer``: draws a batch's candidates with the backbone (and scores them with the
    LatentRM), and turns a question's candidates into its response."""

    def __init__(self, model, tokenizer, rm) -> None:
        self.model, self.tokenizer, self.rm = model, tokenizer, rm

    def check(self, job: Job) -> None:
        """The named failures of a document, found before any compute: an empty question, a prompt too long
        for the context window (``PromptTooLongError``)."""
        if not job.question.strip():
            raise DocError("the question is empty")
        try:
            self.model.context_room(torch.tensor([len(job.prompt)]), self.model.latent_steps_of(job.config))
        except PromptTooLongError as err:
            raise DocError(str(err)) from None

    def candidates(self, setting: Setting, prompts: list[list[int]], offset: int, count: int) -> list:
        if setting.aggregation.search:
            return rollouts.beam(self.model, self.tokenizer, prompts, setting.config, self.rm)
        return rollouts.sample(self.model, self.tokenizer, prompts, setting.config, self.rm, sample_offset=offset,
                               count=count)

    def greedy(self, setting: Setting, prompts: list[list[int]]) -> list:
        return rollouts.sample(self.model, self.tokenizer, prompts, setting.greedy, None)

    def respond(self, job: Job, candidates, greedy=None) -> str:
        """The response to one request: its ``QuestionResult`` as JSON, or ``#### <answer>``."""
        answers = [canonical_answer(a) for a in candidates.answers]
        chosen = select(answers, candidates.scores, job.setting.aggregation, candidates.chosen)
        if not job.setting.payload:
            if chosen.answer is not None:
                return f"#### {chosen.answer}"
            return candidates.texts[chosen.chosen] if chosen.chosen is not None else candidates.texts[0]
        scores = candidates.scores or [None] * len(answers)
        result = self._result(job, has_rm=candidates.scores is not None)
        result.candidates = [CandidateRow(answer, None if score is None else round(float(score), 6), text,
                                          int(steps))
                             for text, answer, score, steps in zip(candidates.texts, answers, scores,
                                                                   candidates.latent_steps)]
        result.selection = chosen
        result.rollouts = candidates.drawn + (greedy.drawn if greedy is not None else 0)
        result.latent_forwards = candidates.latent_forwards + (greedy.latent_forwards if greedy is not None else 0)
        result.stopped = candidates.stopped
        if result.has_greedy:
            result.greedy = canonical_answer((greedy or candidates).answers[0])  # sampling off: the rollout
        return result.to_json()

    def failed(self, job: Job, reason: str) -> str:
        """The response to a document that could not run (logged): no answer, scored wrong."""
        logger.warning("latent_tts: %s; the document is scored as wrong. Question: %.80r", reason, job.question)
        if not job.setting.payload:
            return ""
        result = self._result(job, has_rm=self.rm is not None)
        result.rollouts, result.latent_forwards, result.stopped, result.error = 0, 0, FAILED, reason
        return result.to_json()

    @staticmethod
    def _result(job: Job, has_rm: bool) -> QuestionResult:
        """A result with the fields that depend only on the settings, the same for answered and failed
        documents: ``n`` (N rollouts, or the B beams of beam search) and ``first_round``."""
        config, how = job.config, job.setting.aggregation
        return QuestionResult(
            aggregate=how.name, n=config.latent_beams if how.search else config.num_return_sequences,
            has_rm=has_rm, first_round=round_size(config, how) if rounds_apply(config, how) else None,
            has_greedy=bool(config.greedy_baseline))


class LatentTTSModel(LM):
    """lm-eval model ``latent_tts`` (see the module docstring and :mod:`lm_eval_latenttts.harness.arguments`)."""

    def __init__(self, _harness_device: bool = False, **kwargs) -> None:
        super().__init__()
        self.load_options, overrides = parse_model_args(shipped_defaults(dict(kwargs)))
        self._warned: set[str] = set()
        self._task_settings: dict[str, dict] = {}
        self._settings: dict = {}  # a request's gen_kwargs -> its Setting (resolved once)
        self._distinct: dict = {}  # (settings JSON, payload) -> Setting: equal settings share one
        self._failed: dict[str, int] = {}  # task -> documents answered as failed (all processes), see generate_until
        self.accelerator, self._rank, self._world_size = process_group()
        device = self.accelerator.device if self.accelerator is not None else pick_device(
            self.load_options["device"], harness_default=_harness_device)
        self._device = device
        # the run's seed for seed=none (model_args or gen_kwargs): drawn once, the same on every process
        self._drawn_seed, self.seed_drawn = self._all_processes(secrets.randbelow(DRAWN_SEEDS) + 1)[0], False
        self._create_model(pick_dtype(self.load_options["dtype"], device))
        # the run's settings: the checkpoint's recommended ones, then model_args (checked once, here)
        self.run_config = self._resolve(self.base_config, overrides, "model_args")
        self._given = set(overrides)  # the settings model_args name: a setting that cannot apply is refused
        self._check_given(self.run_config, self._given, "model_args")
        sizes = pick_batch_size(self.load_options["batch_size"], self.load_options["max_batch_size"], device,
                                self.run_config.num_return_sequences)
        self.load_options["batch_size"], self.load_options["max_batch_size"] = sizes
        self.batches = BatchRunner(*sizes, device, sizer=self._fit if device.type == "cuda" else None)
        self.answerer = Rollouts(self.model, self.tokenizer, self.rm)

    def _fit(self, setting: Setting, width: int, most: int) -> int:
        """Questions per call of ``setting`` at prompt width ``width`` that the free device memory holds
        (``harness.memory``; ``batch_size=auto`` on CUDA)."""
        from lm_eval_latenttts.harness.memory import fit_questions, free_bytes

        return fit_questions(free_bytes(self._device), self.model, self.rm, setting.config, width, most,
                             search=setting.aggregation.search)

    # ------------------------------------------------------------------ hooks
    def _create_model(self, dtype) -> None:
        """Load the backbone, its tokenizer and the optional LatentRM (exactly; see hf_modeling.loading)."""
        self.pretrained = self.load_options["pretrained"]
        self.model, self.tokenizer, self.rm, self.base_config = load_models(
            self.pretrained, self.load_options["rm"], self.load_options["revision"], dtype, self._device)

    def _resolve(self, base, overrides: dict, source: str):
        """``base`` updated with ``overrides``: validated and resolved for the backbone (the one validation of
        a distinct setting); errors name ``source`` and the keys of ``source``.

        Warns (once) about settings that run but do not do what their names promise; sampling of strength 0
        runs as sampling=none, since its N rollouts are identical.  ``seed=none`` becomes the run's drawn seed
        (logged, recorded in the results): a question's samples never depend on its batch.
        """
        try:
            config = self.model.latent_generation_config(
                base, eos_token_id=self.tokenizer.eos_token_id, pad_token_id=self.tokenizer.pad_token_id,
                return_dict_in_generate=True, **overrides)
            config.check_rm(has_rm=self.rm is not None)
        except ValueError as err:
            message = err.named(SHORT_NAMES) if isinstance(err, SettingError) else str(err)
            raise LatentTTSArgumentError(f"latent_tts {source}: {message}") from None
        self._check_window(config, source)
        if config.seed is None:
            config.seed, self.seed_drawn = self._drawn_seed, True
            self._warn_once("seed", "latent_tts: seed=none: this run draws its samples with seed=%d, drawn at random "
                            "(recorded in the results); pass seed=%d to reproduce them.", config.seed, config.seed)
        for key, message in config.idle_settings(SHORT_NAMES):
            self._warn_once(key, "latent_tts: %s", message)
        if config.latent_sampling is not None and not config.samples:  # as for_backbone leaves sampling=none:
            config.latent_sampling = config.dropout_p = config.noise_std = None  # valid, so not validated again
        return config

    def _check_given(self, config, given: set, source: str, run_given: set = frozenset()) -> None:
        """Refuse a setting asked for (in ``source``: ``given``) that the chosen aggregation cannot honour: beam
        search keeps B beams of C candidates (``n`` would be ignored) and draws no rounds (``adaptive``).  One the
        run's model_args asked for (``run_given``) while a task's gen_kwargs choose beam search is said once."""
        if config.selection(self.rm is not None) != "beam":
            return

        def ignored(fields: set) -> list[str]:
            found = [f"n={config.num_return_sequences}"] if "num_return_sequences" in fields else []
            return found + (["adaptive=true"] if "adaptive" in fields and config.adaptive else [])

        why = (f"RM-guided beam search keeps beams={config.latent_beams} beams of candidates="
               f"{config.latent_candidates} candidates each (B*C rollouts per latent step) and returns the B beams")
        if ignored(given):
            raise LatentTTSArgumentError(
                f"latent_tts {source}: {' and '.join(ignored(given))} cannot apply with aggregate=beam: {why}. Leave "
                "it out, and size the search with beams= and candidates=.")
        if ignored(run_given - given):
            self._warn_once("beam_ignores", "latent_tts: a task's gen_kwargs choose aggregate=beam, so model_args %s "
                            "do not apply to it: %s.", " and ".join(ignored(run_given - given)), why)

    def _check_window(self, config, source: str) -> None:
        """Refuse a setting under which no question can run: its latent steps, the end marker and one answer token
        do not fit in the context window even after the shortest prompt (a one-token question)."""
        limit, steps = self.model.max_context_length(), self.model.latent_steps_of(config)
        shortest = len(self.model.encode_prompt(self.tokenizer, "0"))
        try:
            self.model.context_room(torch.tensor([shortest]), steps)
        except PromptTooLongError:
            raise LatentTTSArgumentError(
                f"latent_tts {source}: {steps} latent steps (latent_length), the end marker and one answer token "
                f"do not fit in the model's context window of {limit} positions even after the shortest prompt "
                f"({shortest} tokens), so no question could run. Use latent_length <= {limit - shortest - 2}."
            ) from None

    def _setting(self, gen_kwargs: dict) -> Setting:
        """The resolved ``Setting`` of a request's ``gen_kwargs`` (the run's, then its overrides): resolved
        the first time these ``gen_kwargs`` are seen, then looked up."""
        key = repr(sorted((k, repr(v)) for k, v in gen_kwargs.items()))
        if key in self._settings:
            return self._settings[key]
        overrides, ignored, payload = request_overrides(gen_kwargs)
        for name in ignored:
            value = gen_kwargs.get(name)
            greedy_anyway = value is False or value is None or (not isinstance(value, bool) and value in (0, 1))
            if name in ("until", "max_gen_toks", "max_length", "stop") or greedy_anyway:
                continue  # task boilerplate, or a value that means greedy anyway (do_sample=True is not: True == 1)
            self._warn_once(f"ignored:{name}", "latent_tts ignores the generation setting %r (answers are decoded "
                            "greedily after the latent phase).", name)
        changes = {k: v for k, v in overrides.items() if getattr(self.run_config, k) != v}
        config = self._resolve(self.run_config, overrides, "gen_kwargs") if changes else self.run_config
        self._check_given(config, set(overrides), "gen_kwargs", run_given=self._given)
        distinct = (config.to_json_string(use_diff=False), payload)
        if distinct not in self._distinct:
            how = AGGREGATIONS[config.selection(self.rm is not None)]
            greedy = config.greedy() if payload and config.greedy_baseline and (config.samples or how.search) \
                else None  # the greedy row (a metric of the latent_* tasks); sampling off: the rollout is it
            self._distinct[distinct] = Setting(len(self._distinct), config, how, payload, greedy)
        self._settings[key] = self._distinct[distinct]
        return self._settings[key]

    # ------------------------------------------------------------------ requests
    def _job(self, index: int, request, repeat: int = 0) -> Job:
        """The job of a request; ``repeat`` r (lm-eval's r-th copy of it) draws samples r*N .. r*N+N-1."""
        context, gen_kwargs = request.args[0], (request.args[1] if len(request.args) > 1 else {}) or {}
        setting = self._setting(gen_kwargs)
        config = setting.config
        where = f"document {getattr(request, 'doc_id', None)} of task {getattr(request, 'task_name', None)}"
        question = bare_question(context, getattr(request, "doc", None), where)
        if repeat and config.samples and setting.aggregation.search:
            raise LatentTTSArgumentError(
                "latent_tts: the task repeats each request (repeats > 1), but aggregate=beam has no sample index "
                "to give each repeat samples of its own (every repeat would be the same search). Use repeats: 1 "
                "with beam search, or n=<K> with another aggregate instead of repeats.")
        if repeat and not config.samples:
            self._warn_once("deterministic_repeats", "latent_tts: the task repeats each request, but with "
                            "sampling=none every repeat is the same deterministic answer.")
        return Job(index, question, self.model.encode_prompt(self.tokenizer, question), setting,
                   sample_offset=repeat * config.num_return_sequences)

    def generate_until(self, requests: list[Instance], disable_tqdm: bool = False) -> list[str]:
        # every request is parsed and checked first: bad gen_kwargs, a few-shot context or a task that no
        # document of can run fail before any compute
        jobs = [self._job(i, request, repeat) for i, (request, repeat) in
                enumerate(zip(requests, repeat_indices(requests)))]
        failed = failures(jobs, self.answerer)
        self._count_failed(requests, failed)
        self._note_task_settings(requests, jobs)
        results = self.batches.run(jobs, self.answerer, failed, disable_tqdm=disable_tqdm or self.rank != 0)
        for request, text in zip(requests, results):
            self.cache_hook.add_partial("generate_until", request.args, text)
        return results

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
        return self.batches.batch_sizes

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
                self._task_settings[task] = scaling_settings(job.config, self.rm is not None)

    def get_model_info(self) -> dict:
        """What lm-eval writes into the results' ``config``: the keys ``HFLM`` writes for the backbone
        (``model_num_parameters``, ``model_dtype``, ``model_revision``, ``model_sha``) and the same for the
        LatentRM (``rm_*``), read by leaderboard back-ends, plus the ``latent_tts`` block: the checkpoints,
        their weights' sha256 (``export-results`` matches a model folder by it), the run's settings, each
        task's settings and the local data files the tasks were pointed at."""
        from lm_eval_latenttts.publishing.model_info import checkpoint_info, data_overrides

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
            **scaling_settings(self.run_config, self.rm is not None),
            "seed_drawn": self.seed_drawn,  # seed=none: a seed (the one recorded) was drawn for the run
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
