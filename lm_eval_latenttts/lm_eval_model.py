"""``LatentTTSModel``: latent reasoning models with parallel test-time scaling as an lm-eval model.

``lm_eval --model latent_tts --model_args n=8,sampling=dropout --tasks latent_arith``

Every ``generate_until`` request is one question.  Its N stochastic latent
rollouts run together (one batched ``generate`` call of N rows; with
``batch_size`` B, B questions and B*N rows), the N answers are extracted with
the backbone's answer format, optionally scored by a LatentRM, and aggregated
(majority vote, best-of-N, RM-weighted vote or RM-guided beam search).

What a request gets back depends on the task:

* the ``latent_*`` tasks of this package (their ``generation_kwargs`` carry
  ``latent_tts_payload: true``) get a JSON payload with every candidate's
  extracted answer, RM score and which one was chosen; their
  ``process_results`` turns it into accuracy, majority@N, best-of-N, weighted
  vote, coverage and pass@k rows, and ``--log_samples`` records it;
* any other generation task (e.g. the built-in ``gsm8k`` with
  ``--num_fewshot 0``) gets ``"#### <answer>"``, which both of gsm8k's
  filters (strict-match and flexible-extract) read as the aggregated answer.
  The harness's zero-shot ``"Question: ...\\nAnswer:"`` context is reduced to
  the bare question; a few-shot context is an error (latent reasoning models
  are evaluated zero-shot).

See :mod:`lm_eval_latenttts.model_args` for the model arguments.
"""

import json
import logging
import os
import re

import torch
from lm_eval.api.model import LM

from lm_eval_latenttts import aggregation, defaults
from lm_eval_latenttts.model_args import (
    LatentTTSArgumentError,
    parse_model_args,
    resolve_run_settings,
    run_overrides,
)

# under lm-eval's logger, so that INFO lines show at the harness's default verbosity
logger = logging.getLogger("lm_eval.latent_tts")

_HARNESS_QA = re.compile(r"^\s*Question:\s*(?P<q>.*?)\s*\n\s*Answer:\s*$", re.DOTALL)


def default_pretrained():
    """Folder of the checkpoint shipped with the package (clear error if it is not installed)."""
    try:
        return str(defaults.default_model_path())
    except FileNotFoundError as err:
        raise FileNotFoundError(
            f"{err} Or pass model_args pretrained=<Hub id or folder>, e.g. pretrained=ModalityDance/latent-tts-coconut."
        ) from None


def apply_shipped_defaults(arg_dict):
    """No ``pretrained``: run the shipped model with its LatentRM and the settings it was tuned for.

    Keys the user gave win; the resolved path is written back into ``arg_dict``
    (the dict lm-eval logs), so results and the output folder name the checkpoint.
    """
    if arg_dict.get("pretrained") not in (None, ""):
        return arg_dict
    arg_dict["pretrained"] = default_pretrained()
    rm = defaults.default_rm_path()
    if rm is not None and arg_dict.get("rm") in (None, ""):
        arg_dict["rm"] = str(rm)
        arg_dict.setdefault("aggregate", defaults.SHIPPED_RM_AGGREGATE)
    for key, value in defaults.SHIPPED_RUN_DEFAULTS.items():
        arg_dict.setdefault(key, value)
    if arg_dict["sampling"] in defaults.SHIPPED_STRENGTH:
        key, value = defaults.SHIPPED_STRENGTH[arg_dict["sampling"]]
        arg_dict.setdefault(key, value)
    return arg_dict


TINY_MODEL_PARAMETERS = 20_000_000
HARNESS_DEFAULT_DEVICE = "cuda:0"  # what lm-eval's EvaluatorConfig passes when no --device is given


def _single_thread_for_tiny_cpu_models(model, device):
    """One torch thread for a tiny model on CPU, unless the user chose (OMP_NUM_THREADS).

    Its matrices are so small that intra-op threads only add synchronisation:
    on a 2-core machine with any other load, 2 threads made the shipped 0.8M
    parameter model about 100x slower (2.5 s instead of 0.025 s per question).
    """
    if torch.device(device).type != "cpu" or "OMP_NUM_THREADS" in os.environ:
        return
    if sum(p.numel() for p in model.parameters()) < TINY_MODEL_PARAMETERS and torch.get_num_threads() > 1:
        logger.info("latent_tts: tiny model on CPU, using 1 torch thread (set OMP_NUM_THREADS to choose).")
        torch.set_num_threads(1)


def _is_oom(err):
    if isinstance(err, torch.OutOfMemoryError):
        return True
    return isinstance(err, RuntimeError) and "out of memory" in str(err).lower()


def _format_answer(answer):
    """An extracted answer in canonical text form (numbers as numbers: '1,234.0' -> '1234')."""
    if answer is None:
        return None
    number = aggregation.normalize_number(answer)
    if number is None:
        return str(answer)
    if isinstance(number, int):
        return str(number)
    return repr(float(number))


class _DocError(Exception):
    """A problem with one document: it is scored wrong, the run goes on."""


class LatentTTSModel(LM):
    """lm-eval model ``latent_tts`` (see the module docstring and :mod:`lm_eval_latenttts.model_args`)."""

    def __init__(self, _harness_device=False, **kwargs):
        super().__init__()
        self.settings = parse_model_args(kwargs)
        s = self.settings
        self._warned = set()

        # ---- processes and device
        self.accelerator = None
        world = int(os.environ.get("WORLD_SIZE", "1") or 1)
        if world > 1:
            from accelerate import Accelerator

            accelerator = Accelerator()
            if accelerator.num_processes > 1:
                self.accelerator = accelerator
                self._rank = accelerator.process_index
                self._world_size = accelerator.num_processes
        self._device = self._pick_device(s["device"], harness_default=_harness_device)

        # ---- backbone, tokenizer, RM
        from hf_modeling import AutoLatentModel, load_latent_tokenizer

        self.pretrained = s["pretrained"] or default_pretrained()
        dtype = self._pick_dtype(s["dtype"])
        self.model = AutoLatentModel.from_pretrained(self.pretrained, revision=s["revision"], dtype=dtype)
        self.model.to(self._device).eval()
        _single_thread_for_tiny_cpu_models(self.model, self._device)
        self.backbone = aggregation._backbone_kind(self.model)
        self.tokenizer = load_latent_tokenizer(self.pretrained, self.model.config, revision=s["revision"])
        self.rm = None
        if s["rm"] is not None:
            self.rm = self._load_rm(s["rm"], dtype)
        if s["aggregate"] == "beam":
            self._beam_search_fn()  # fail now, not after hours, if beam search is unavailable
        self.batch_size = s["batch_size"]
        self._auto_batch = self.batch_size == "auto"
        self._current_batch = s["max_batch_size"] if self._auto_batch else self.batch_size
        self.batch_sizes = {}
        # the run's settings as they stand without per-task overrides (checked once here)
        self.run_settings = self._checked(resolve_run_settings(s, {}, self.backbone))

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def create_from_arg_obj(cls, arg_dict, additional_config=None):
        """As lm-eval's, but ``--model_args`` wins over the CLI's generic batch_size/device.

        When ``pretrained`` is not given, the resolved default is written back
        into ``arg_dict`` (the dict lm-eval also logs), so the results JSON and
        the output folder are named after the checkpoint actually used.
        """
        extra = {k: v for k, v in (additional_config or {}).items() if v is not None and k not in arg_dict}
        apply_shipped_defaults(arg_dict)
        harness_device = extra.get("device") == HARNESS_DEFAULT_DEVICE
        return cls(**arg_dict, **extra, _harness_device=harness_device)

    @classmethod
    def create_from_arg_string(cls, arg_string, additional_config=None):
        from lm_eval.utils import simple_parse_args_string

        return cls.create_from_arg_obj(simple_parse_args_string(arg_string), additional_config)

    def _pick_device(self, device, harness_default=False):
        """The device: accelerate's in a multi-process run, else ``device``, else the best available one.

        lm-eval passes ``device="cuda:0"`` to every model when the user gave no
        ``--device``; that default (``harness_default``) means "pick one" here,
        so a CPU machine is not warned about a device nobody asked for.
        """
        if self.accelerator is not None:
            return self.accelerator.device
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

    def _pick_dtype(self, dtype):
        if dtype == "auto":
            return torch.float32 if self._device.type == "cpu" else "auto"
        return getattr(torch, dtype)

    def _load_rm(self, path, dtype):
        from hf_modeling import AutoLatentModel
        from hf_modeling.modeling_latent_rm import LatentRMMixin

        rm = AutoLatentModel.from_pretrained(path, revision=self.settings["revision"], dtype=dtype)
        if not isinstance(rm, LatentRMMixin):
            raise LatentTTSArgumentError(
                f"latent_tts model_args: rm={path!r} is a {type(rm).__name__}, not a LatentRM "
                "(a token-classification model with architectures COCONUTGPT2ForTokenClassification or a Llama RM)."
            )
        try:
            rm.check_backbone(self.model)
        except ValueError as err:
            raise LatentTTSArgumentError(
                f"latent_tts model_args: the RM {path!r} does not match the backbone {self.pretrained!r}: {err}"
            ) from err
        return rm.to(self._device).eval()

    def _beam_search_fn(self):
        try:
            from lm_eval_latenttts.search import beam
        except ImportError as err:
            raise LatentTTSArgumentError(
                f"latent_tts: aggregate=beam needs lm_eval_latenttts.search.beam, which is not available ({err})."
            ) from err
        fn = getattr(beam, "rm_beam_search", None)
        if not callable(fn):
            raise LatentTTSArgumentError("latent_tts: lm_eval_latenttts.search.beam has no rm_beam_search function.")
        return fn

    # ------------------------------------------------------------------ lm-eval plumbing
    @property
    def device(self):
        return self._device

    @property
    def tokenizer_name(self):
        return str(self.pretrained).replace("/", "__")

    def all_gather(self, tensor):
        if self.world_size <= 1:
            return tensor
        return self.accelerator.gather(tensor)

    def gather_object(self, obj, dst=0):
        if self.world_size <= 1:
            return [obj]
        result = [None] * self.world_size if self.rank == dst else None
        torch.distributed.gather_object(obj=obj, object_gather_list=result, dst=dst)
        return result

    def barrier(self):
        if self.world_size > 1:
            self.accelerator.wait_for_everyone()

    def get_model_info(self):
        s = self.run_settings
        info = {
            "latent_tts": {
                "pretrained": str(self.pretrained),
                "backbone": self.backbone,
                "backbone_class": type(self.model).__name__,
                "num_parameters": sum(p.numel() for p in self.model.parameters()),
                "dtype": str(next(self.model.parameters()).dtype),
                "rm": self.settings["rm"],
                "rm_class": type(self.rm).__name__ if self.rm is not None else None,
                "sampling": s["sampling"] or "none",
                "dropout_p": s["dropout_p"],
                "noise_std": s["noise_std"],
                "dropout_scope": s["dropout_scope"],
                "n": s["n"],
                "aggregate": s["aggregate"],
                "beams": s["beams"] if s["aggregate"] == "beam" else None,
                "candidates": s["candidates"] if s["aggregate"] == "beam" else None,
                "latent_length": s["latent_length"],
                "max_new_tokens": s["max_new_tokens"],
                "seed": s["seed"],
                "batch_size": self.settings["batch_size"],
            }
        }
        info["model_name"] = str(self.pretrained)
        return info

    def loglikelihood(self, requests):
        raise NotImplementedError(
            "latent_tts only supports generate_until tasks (e.g. latent_gsm8k, latent_arith, or gsm8k with "
            "--num_fewshot 0): a latent reasoning model answers after reasoning in continuous space and has no "
            "token log-likelihoods to score multiple-choice or perplexity tasks."
        )

    def loglikelihood_rolling(self, requests):
        raise NotImplementedError(
            "latent_tts only supports generate_until tasks; loglikelihood_rolling (perplexity) is not available "
            "for latent reasoning models."
        )

    def apply_chat_template(self, chat_history, add_generation_prompt=True):
        raise NotImplementedError(
            "latent_tts does not use chat templates: the model applies its backbone's own prompt format. "
            "Run without --apply_chat_template."
        )

    # ------------------------------------------------------------------ prompts
    def _question(self, context, payload):
        """The bare question of a request's context (the harness's zero-shot wrapper removed)."""
        if not payload:
            if context.count("Question:") > 1:
                raise ValueError(
                    "latent_tts: the task sent a few-shot context (several 'Question:' blocks). Latent reasoning "
                    "models are evaluated zero-shot: they were trained to reason in latent space from the bare "
                    "question and cannot use worked examples. Run with --num_fewshot 0."
                )
            match = _HARNESS_QA.match(context)
            if match:
                return match.group("q")
        return context.strip()

    def _prompt_ids(self, question):
        """Token ids of the backbone's prompt (SPEC), ending with the start marker."""
        return self.model.encode_prompt(self.tokenizer, question)

    def _latent_steps(self, settings):
        cfg = self.model.config
        if self.model.dynamic_latent_length:
            return settings["latent_length"] if settings["latent_length"] is not None else cfg.max_latent_length
        return settings["latent_length"] if settings["latent_length"] is not None else cfg.latent_length

    def _check_doc(self, question, ids, settings):
        if not question.strip():
            raise _DocError("the question is empty")
        limit = self.model.max_context_length()
        steps = self._latent_steps(settings)
        if limit is not None and len(ids) + steps + 2 > limit:
            raise _DocError(
                f"the prompt has {len(ids)} tokens; with {steps} latent steps it does not fit the model's "
                f"context window of {limit} positions"
            )

    # ------------------------------------------------------------------ generation
    def generate_until(self, requests, disable_tqdm=False):
        # parse every request first: bad gen_kwargs or a few-shot context fail before any compute
        jobs = []
        for i, req in enumerate(requests):
            context, gen_kwargs = req.args[0], (req.args[1] if len(req.args) > 1 else {}) or {}
            overrides, ignored, payload = run_overrides(gen_kwargs)
            for key in ignored:
                value = gen_kwargs.get(key)
                if key in ("until", "max_gen_toks", "max_length", "stop") or value in (False, None, 0, 0.0, 1.0):
                    continue  # task boilerplate, or a value that means greedy anyway
                self._warn_once(f"ignored:{key}", "latent_tts ignores the generation setting %r (answers are "
                                "decoded greedily after the latent phase).", key)
            settings = self._checked(resolve_run_settings(self.settings, overrides, self.backbone))
            question = self._question(context, payload)
            jobs.append({"index": i, "question": question, "settings": settings, "payload": payload})
        if any(j["settings"]["aggregate"] in ("best_of_n", "weighted", "beam") for j in jobs) and self.rm is None:
            raise LatentTTSArgumentError("latent_tts: the requested aggregation needs a LatentRM; pass rm=...")

        results = [None] * len(requests)
        groups = {}
        for job in jobs:
            key = json.dumps(job["settings"], sort_keys=True)
            groups.setdefault(key, []).append(job)

        from tqdm import tqdm

        bar = tqdm(total=len(jobs), disable=disable_tqdm or self.rank != 0, desc="latent_tts rollouts")
        for group in groups.values():
            settings = group[0]["settings"]
            ready = []
            for job in group:
                ids = self._prompt_ids(job["question"])
                try:
                    self._check_doc(job["question"], ids, settings)
                except _DocError as err:
                    results[job["index"]] = self._failed(job, str(err))
                    bar.update(1)
                    continue
                job["ids"] = ids
                ready.append(job)
            # batches of prompts of one length: no padding, so a question's numbers are the same bits whatever
            # it is batched with (padding shifts the attention's reductions and changes their rounding)
            by_length = {}
            for job in sorted(ready, key=lambda j: -len(j["ids"])):
                by_length.setdefault(len(job["ids"]), []).append(job)
            for same_length in by_length.values():
                start = 0
                while start < len(same_length):
                    size = max(1, int(self._current_batch))
                    chunk = same_length[start : start + size]
                    for job, out in zip(chunk, self._run_chunk(chunk, settings)):
                        results[job["index"]] = out
                    if self._auto_batch:
                        self.batch_sizes = {0: int(self._current_batch)}
                    start += len(chunk)
                    bar.update(len(chunk))
        bar.close()
        for req, text in zip(requests, results):
            self.cache_hook.add_partial("generate_until", req.args, text)
        return results

    def _run_chunk(self, chunk, settings):
        """Outputs of a chunk of questions; halves the chunk on out-of-memory, isolates failing documents."""
        try:
            return self._generate(chunk, settings)
        except Exception as err:  # noqa: BLE001
            if _is_oom(err):
                if self._device.type == "cuda":
                    torch.cuda.empty_cache()
                if len(chunk) == 1:
                    return self._split_rollouts(chunk, settings, err)
                half = (len(chunk) + 1) // 2
                self._current_batch = half
                logger.warning("latent_tts: out of memory with %d questions per batch; retrying with %d.",
                               len(chunk), half)
                return self._run_chunk(chunk[:half], settings) + self._run_chunk(chunk[half:], settings)
            if isinstance(err, (LatentTTSArgumentError, NotImplementedError)):
                raise
            if len(chunk) > 1:
                return [out for job in chunk for out in self._run_chunk([job], settings)]
            logger.warning("latent_tts: document failed (%s: %s); it is scored as wrong.", type(err).__name__, err)
            return [self._failed(chunk[0], f"{type(err).__name__}: {err}", log=False)]

    def _split_rollouts(self, chunk, settings, err):
        """One question's N rollouts do not fit: draw them in 2, 4, 8, ... calls."""
        split = 2
        while settings["sampling"] is not None and settings["aggregate"] != "beam" and split <= settings["n"]:
            logger.warning("latent_tts: out of memory with n=%d rollouts in one call; drawing them in %d calls.",
                           settings["n"], split)
            try:
                return self._generate(chunk, settings, split=split)
            except Exception as again:  # noqa: BLE001
                if not _is_oom(again):
                    raise
                if self._device.type == "cuda":
                    torch.cuda.empty_cache()
                split *= 2
        raise RuntimeError(
            f"latent_tts: out of memory with a single question and n={settings['n']} rollouts; "
            "lower n, use a smaller dtype (dtype=bfloat16) or a larger device."
        ) from err

    def _failed(self, job, reason, log=True):
        if log:
            logger.warning("latent_tts: %s; the document is scored as wrong. Question: %.80r", reason, job["question"])
        n = job["settings"]["n"]
        if job["payload"]:
            return json.dumps({
                "answer": None, "aggregate": job["settings"]["aggregate"], "n": n, "candidates": [],
                "chosen": None, "majority": None, "best_of_n": None, "weighted": None,
                "has_rm": self.rm is not None, "error": reason,
            })
        return ""

    def _pad(self, chunk):
        pad = self.tokenizer.pad_token_id
        width = max(len(j["ids"]) for j in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, job in enumerate(chunk):
            k = len(job["ids"])
            ids[row, width - k :] = torch.tensor(job["ids"], dtype=torch.long)
            mask[row, width - k :] = 1
        return ids.to(self._device), mask.to(self._device)

    def _generate(self, chunk, settings, split=1):
        """Aggregated outputs of a chunk; ``split`` > 1 draws the N rollouts in that many smaller calls.

        Sample j of a question is keyed by (seed, its prompt tokens, j) inside
        ``generate``, so neither the chunk's other questions nor the split
        change a question's rollouts.
        """
        n = settings["n"]
        input_ids, attention_mask = self._pad(chunk)
        if settings["aggregate"] == "beam":
            return self._beam(chunk, settings, input_ids, attention_mask)
        draws = n if settings["sampling"] is not None else 1
        sizes = [draws // split + (1 if i < draws % split else 0) for i in range(split)] if draws > 1 else [draws]
        per_job = [([], [] if self.rm is not None else None, []) for _ in chunk]
        offset = 0
        for size in (k for k in sizes if k):
            for q, (texts, scores, lengths) in enumerate(self._rollouts(chunk, settings, input_ids, attention_mask,
                                                                         size, offset)):
                per_job[q][0].extend(texts)
                per_job[q][2].extend(lengths)
                if scores is not None:
                    per_job[q][1].extend(scores)
            offset += size
        results = []
        for job, (cand_texts, cand_scores, cand_lengths) in zip(chunk, per_job):
            if draws != n:  # deterministic: the N rollouts are identical
                cand_texts, cand_lengths = cand_texts * n, cand_lengths * n
                cand_scores = None if cand_scores is None else cand_scores * n
            results.append(self._aggregate(job, settings, cand_texts, cand_scores, cand_lengths))
        return results

    def _rollouts(self, chunk, settings, input_ids, attention_mask, draws, offset=0):
        """One batched generate call: per question, (answer texts, RM scores or None, latent lengths)."""
        kwargs = dict(
            latent_sampling=settings["sampling"],
            dropout_p=settings["dropout_p"],
            noise_std=settings["noise_std"],
            dropout_scope=settings["dropout_scope"],
            num_return_sequences=draws,
            sample_offset=offset,
            seed=settings["seed"],
            max_new_tokens=settings["max_new_tokens"],
            eos_token_id=self.tokenizer.eos_token_id,
            pad_token_id=self.tokenizer.pad_token_id,
            return_dict_in_generate=True,
        )
        if self.model.dynamic_latent_length:
            kwargs["max_latent_length"] = settings["latent_length"]
        else:
            kwargs["latent_length"] = settings["latent_length"]
        out = self.model.generate(input_ids, attention_mask, **kwargs)
        texts = self._decode(out.answer_ids)
        scores = None
        if self.rm is not None:
            scores = self.rm.score_rollouts(out, num_return_sequences=draws).trajectory_scores.float().cpu().tolist()
        lengths = out.latent_lengths.cpu().tolist()
        per_job = []
        for q in range(len(chunk)):
            rows = range(q * draws, (q + 1) * draws)
            per_job.append((
                [texts[r] for r in rows],
                None if scores is None else [scores[r] for r in rows],
                [lengths[r] for r in rows],
            ))
        return per_job

    def _beam(self, chunk, settings, input_ids, attention_mask):
        """RM-guided beam search: the B final beams are the candidates, the chosen beam gives the answer."""
        fn = self._beam_search_fn()
        kwargs = dict(
            num_beams=settings["beams"], num_candidates=settings["candidates"],
            latent_sampling=settings["sampling"], dropout_p=settings["dropout_p"], noise_std=settings["noise_std"],
            dropout_scope=settings["dropout_scope"], seed=settings["seed"], max_new_tokens=settings["max_new_tokens"],
            eos_token_id=self.tokenizer.eos_token_id, pad_token_id=self.tokenizer.pad_token_id,
        )
        if self.model.dynamic_latent_length:
            kwargs["max_latent_length"] = settings["latent_length"]
        else:
            kwargs["latent_length"] = settings["latent_length"]
        out = fn(self.model, self.rm, input_ids, attention_mask, **kwargs)
        results = []
        for q, job in enumerate(chunk):
            texts = self._decode(out.beam_answer_ids[q])
            scores = out.beam_scores[q].float().cpu().tolist()
            lengths = out.beam_step_mask[q].sum(-1).cpu().tolist()
            results.append(self._aggregate(job, settings, texts, scores, lengths, chosen=int(out.chosen[q])))
        return results

    def _decode(self, answer_ids):
        eos = self.tokenizer.eos_token_id
        texts = []
        for row in answer_ids.cpu().tolist():
            if eos in row:
                row = row[: row.index(eos)]
            texts.append(self.tokenizer.decode(row, skip_special_tokens=True))
        return texts

    def _aggregate(self, job, settings, texts, scores, lengths, chosen=None):
        answers = [_format_answer(aggregation.extract_answer(t, self.backbone)) for t in texts]
        majority = aggregation.majority_vote(answers)
        best = weighted = None
        if scores is not None:
            best = answers[aggregation.best_of_n_index(scores)] if answers else None
            weighted = aggregation.weighted_vote(answers, scores)
        how = settings["aggregate"]
        if how == "majority":
            answer = majority
        elif how == "best_of_n":
            answer = best
        elif how == "weighted":
            answer = weighted
        else:  # beam: the search chose the beam with the best trajectory score
            answer = answers[chosen] if answers and chosen is not None else None
        if how == "best_of_n":
            chosen = aggregation.best_of_n_index(scores)
        elif how == "beam":
            pass
        else:
            chosen = next((i for i, a in enumerate(answers) if aggregation.answers_equal(a, answer)), None)
        if job["payload"]:
            candidates = []
            for i, (text, a) in enumerate(zip(texts, answers)):
                cand = {"answer": a, "score": None if scores is None else round(float(scores[i]), 6), "text": text}
                if lengths[i] is not None:
                    cand["latent_steps"] = int(lengths[i])
                candidates.append(cand)
            return json.dumps({
                "answer": answer, "aggregate": how, "n": len(texts), "chosen": chosen,
                "majority": majority, "best_of_n": best, "weighted": weighted,
                "has_rm": scores is not None, "candidates": candidates,
            }, ensure_ascii=False)
        if answer is not None:
            return f"#### {answer}"
        return texts[chosen] if chosen is not None else (texts[0] if texts else "")

    def _checked(self, settings):
        """Warn (once) about settings that run but do not do what their names promise.

        Sampling of strength 0 runs as sampling=none, since its N rollouts are identical.
        """
        n, mode = settings["n"], settings["sampling"]
        if mode is not None and not (settings["dropout_p"] or settings["noise_std"]):
            strength = "dropout_p=0" if mode == "dropout" else "noise_std=0"
            self._warn_once(f"zero:{mode}", "latent_tts: sampling=%s with %s samples nothing: the n=%d rollouts "
                            "are identical (run as sampling=none). Raise the strength.", mode, strength, n)
            settings = {**settings, "sampling": None}
        if n > 1 and settings["sampling"] is None and settings["aggregate"] != "beam":
            self._warn_once("n_without_sampling", "latent_tts: n=%d with sampling=none gives %d identical "
                            "rollouts; pass sampling=dropout or sampling=noise.", n, n)
        return settings  # latent_length=0 is warned about by generate itself

    def _warn_once(self, key, msg, *args):
        if key not in self._warned:
            self._warned.add(key)
            logger.warning(msg, *args)


def _register():
    """Registering on import covers processes without the .pth hook (e.g. running from a source tree)."""
    from lm_eval_latenttts._lm_eval_hook import register_model

    register_model()


_register()
