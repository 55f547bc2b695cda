"""Model cards: the card of a trained LatentRM, and the ``model-index`` results of any card.

* :func:`rm_model_card`: the ``README.md`` that ``train-rm`` writes, from the
  run summary: the Hub's YAML metadata (``library_name``, ``pipeline_tag``,
  ``base_model`` = the checkpoint it was initialised from, ``datasets``,
  ``tags``, ``license``) and the training details.
* :func:`update_model_index`: merge evaluation results into a card's
  ``model-index`` metadata (``export-results``), keeping everything else.
"""

from __future__ import annotations

from pathlib import Path

from hf_modeling.hub import CARD_FILE, card_metadata, render_card
from lm_eval_latenttts.publishing.identity import hub_repo_id


def _fmt(value):
    if isinstance(value, float):
        return f"{value:.4f}"
    return "n/a" if value is None else str(value)


_DESCRIPTION = (
    "A reward model for latent reasoning trajectories (Parallel Test-Time Scaling for Latent Reasoning "
    "Models, arXiv 2510.07745). It reads a question and a latent trajectory (the latent slots hold the "
    "backbone's fed-back vectors) and emits one score per latent step; a trajectory's score is the sum "
    "of its step scores. Use it for best-of-N selection or RM-guided beam search."
)
_LOSSES = {
    "contrastive": "step-wise contrastive loss: at each latent step t, softmax of the step scores over the N "
                   "trajectories of a question; loss = -sum_n label[n,t] log softmax[n,t], summed over t, averaged "
                   "over questions",
    "bce": "binary cross-entropy of sigmoid(step score) against the Monte Carlo step value",
}


def _annotation(summary: dict) -> tuple:
    """(backbone, N, sampling text) of the annotation the RM was trained on.

    ``annotate`` records its rollout settings under ``generation``; older folders have them flat.
    """
    ann = summary.get("annotation_config") or {}
    backbone = ann.get("model") or summary.get("init") or "unknown"
    gen = ann.get("generation") or {}
    sampling = gen.get("latent_sampling", ann.get("sampling"))
    strength = (f"dropout p={gen.get('dropout_p', ann.get('dropout_p'))}" if sampling == "dropout"
                else f"Gaussian noise sigma={gen.get('noise_std', ann.get('noise_std'))}" if sampling == "noise"
                else "n/a")
    n = gen.get("num_return_sequences", ann.get("num_trajectories", summary.get("trajectories_per_question")))
    return backbone, n, strength


def _metadata(summary: dict, backbone: str):
    """The card's Hub metadata: ``base_model`` (given, or the Hub id it was initialised from), dataset, license."""
    ann = summary.get("annotation_config") or {}
    cfg = summary.get("config") or {}
    base_model = cfg.get("base_model") or hub_repo_id(summary.get("init")) or hub_repo_id(backbone)
    dataset = hub_repo_id(ann.get("data"))
    return card_metadata(pipeline_tag="token-classification", tags=["reward-model"], base_model=base_model,
                         datasets=[dataset] if dataset else None, license=cfg.get("license"),
                         base_model_relation="finetune" if base_model else None)


def _training_section(summary: dict, backbone: str, n, strength: str) -> list:
    """The "Training" section: initialisation, data, labels, loss, optimisation, loss curve ends."""
    ann = summary.get("annotation_config") or {}
    cfg = summary.get("config") or {}
    loss = cfg.get("loss", "contrastive")
    dropped = ("; questions whose N trajectories were all right or all wrong dropped"
               + (" (kept here)" if ann.get("keep_all") else ""))
    if ann.get("labels") == "decoded":
        labels = (f"- Labels: exact step labels, N = {n} trajectories per question, sampling: {strength}: latent "
                  "step t is right when the explicit step the backbone writes after the trajectory's latents 0..t "
                  "(clean prompt, greedy) has the gold next step's expression; the last step: the trajectory's "
                  "final correctness" + dropped)
    elif ann.get("labels") == "outcome":
        labels = (f"- Labels: outcome labels, N = {n} trajectories per question, sampling: {strength}: every latent "
                  "step is labelled with the trajectory's final correctness (no continuations)" + dropped)
    else:
        labels = (f"- Labels: step-wise Monte Carlo values, N = {n} trajectories per question, M = "
                  f"{ann.get('num_continuations', 'n/a')} continuations per step, sampling: {strength}" + dropped)
    reads = ([f"- Input: the prompt, the latent steps, then the end marker and the decoded answer; the answer's "
              "last token is scored as one more (outcome) step, labelled with final correctness"]
             if cfg.get("rm_input") == "latents+answer" else [])
    return [
        "## Training",
        "",
        f"- Initialised from: `{summary.get('init')}` ({summary.get('init_kind', 'n/a')})",
        f"- Backbone whose latents it scores: `{backbone}`",
        f"- Data: `{ann.get('data', summary.get('annotations'))}`; {summary.get('train_questions')} training "
        f"questions, {summary.get('eval_questions')} held out",
        labels,
        *reads,
        f"- Loss: {_LOSSES['contrastive' if loss == 'contrastive' else 'bce']}".replace(
            "the Monte Carlo step value", "the step label" if ann.get("labels") in ("decoded", "outcome") else
            "the Monte Carlo step value"),
        f"- Optimisation: lr {cfg.get('lr')}, cosine schedule, warm-up {cfg.get('warmup_ratio')}, "
        f"{summary.get('optimizer_steps')} optimizer steps of {summary.get('global_batch', cfg.get('batch_size'))} "
        f"questions ({summary.get('num_processes', 1)} processes x {cfg.get('batch_size')} questions x "
        f"{cfg.get('grad_accum')} accumulation), precision {cfg.get('precision')}"
        + (f", LoRA r={cfg.get('lora_r')} (merged)" if cfg.get("lora_r") else ", full fine-tuning")
        + (", no dropout" if cfg.get("dropout") is False else "")
        + (", weights re-initialised" if cfg.get("reinit") else "")
        + (f", {cfg.get('rm_layers')} transformer blocks" if cfg.get("rm_layers") else "")
        + (f", weight decay {cfg.get('weight_decay')}" if cfg.get("weight_decay") else "")
        + (f"; early stopping: the weights of step {summary.get('selected_step')} (lowest held-out loss)"
           if cfg.get("keep_best") else "")
        + (f", patience {cfg.get('patience')} evaluations" if cfg.get("patience") else ""),
        f"- Training loss: {_fmt(summary.get('first_loss'))} -> {_fmt(summary.get('last_loss'))}",
    ]


def _evaluation_section(summary: dict) -> list:
    """The held-out table, before and after training."""
    before = summary.get("eval_before") or {}
    after = summary.get("eval_after") or {}
    rows = [("recall@1 (RM's top trajectory is right)", "eval_recall_at_1"),
            ("random pick (mean trajectory accuracy)", "eval_random_pick"), ("loss", "eval_loss")]
    return [
        "## Evaluation (held-out annotated questions)",
        "",
        "| metric | before training | after training |" if summary.get("selected_step") is None else
        f"| metric | before training | after training (the kept weights: step {summary['selected_step']}) |",
        "| --- | --- | --- |",
        *(f"| {label} | {_fmt(before.get(key))} | {_fmt(after.get(key))} |" for label, key in rows),
        "",
        "Held-out questions come from the same annotation (each has at least one right and one wrong "
        "trajectory), so these numbers measure selection among mixed trajectories, not benchmark accuracy.",
    ]


def _usage_section(backbone: str, name: str, n) -> list:
    """How to score N rollouts of the backbone with this RM."""
    return [
        "## Usage",
        "",
        "```python",
        "import torch",
        "from hf_modeling import AutoLatentModel, load_latent_tokenizer  # pip install lm-eval-latenttts",
        "",
        f'backbone = AutoLatentModel.from_pretrained("{backbone}")',
        f'tok = load_latent_tokenizer("{backbone}", backbone.config)',
        f'rm = AutoLatentModel.from_pretrained("{name}")',
        "# or: transformers.AutoModelForTokenClassification.from_pretrained(..., trust_remote_code=True)",
        "",
        'question = "Start at 47, plus 8, then times 3. Answer mod 100?"',
        'prompt = tok([backbone.format_prompt(question)], return_tensors="pt")  # the backbone\'s prompt format',
        f"N = {n or 8}",
        "out = backbone.generate(**prompt, num_return_sequences=N, latent_sampling=\"dropout\", dropout_p=0.2,",
        "                        seed=0, return_dict_in_generate=True)",
        "scores = rm.score_rollouts(out)                    # step_scores (rows, steps), trajectory_scores (rows,)",
        "best = scores.trajectory_scores.view(-1, N).argmax(-1)",
        "print(tok.decode(out.answer_ids[best[0]], skip_special_tokens=True))",
        "```",
    ]


def rm_model_card(summary: dict, rm=None, repo_id: str | None = None) -> str:
    """Markdown model card with the Hub's YAML metadata, from the ``training_summary.json`` dict."""
    arch = type(rm).__name__ if rm is not None else "LatentRM"
    name = repo_id or (summary.get("config") or {}).get("push_to_hub") or "path/to/this/folder"
    backbone, n, strength = _annotation(summary)
    lines = [
        f"# LatentRM ({arch})", "", _DESCRIPTION, "",
        *_training_section(summary, backbone, n, strength), "",
        *_evaluation_section(summary), "",
        *_usage_section(backbone, name, n), "",
        "Trained with `python -m lm_eval_latenttts train-rm` (lm-eval-latenttts); `training_summary.json` holds "
        "the full run record.",
        "",
    ]
    return render_card(_metadata(summary, backbone), "\n".join(lines))


def read_card(folder, new_card: str | None = None):
    """The ``README.md`` card of ``folder`` as a ``huggingface_hub.ModelCard`` (``new_card`` if there is none).

    A card whose metadata or ``model-index`` cannot be read is an error naming the file, so that nothing
    is merged into it (and nothing written beside it) before it is fixed.
    """
    import yaml
    from huggingface_hub import ModelCard

    path = Path(folder) / CARD_FILE
    if not path.is_file():
        return ModelCard(new_card or "")
    try:
        return ModelCard(path.read_text(encoding="utf-8"))
    except (ValueError, yaml.YAMLError) as err:
        reason = " ".join(str(err).split(". Pass `ignore_metadata_errors=True`")[0].split())
        raise ValueError(f"{path}: its YAML metadata cannot be read ({reason}). Fix or remove its model-index "
                         "(or the whole metadata block) and export again; nothing was written.") from None


def update_model_index(folder, results: list, model_name: str, new_card: str | None = None, card=None) -> Path:
    """Merge ``results`` (``huggingface_hub.EvalResult``) into the ``model-index`` of ``folder/README.md``.

    An existing entry for the same task, dataset, metric and metric config is replaced; the card's other
    metadata and text stay as they are.  A folder without a card gets ``new_card`` first.  ``card``: the
    card ``read_card`` already read (else it is read here).
    """
    path = Path(folder) / CARD_FILE
    card = read_card(folder, new_card) if card is None else card

    def key(result):
        return (result.task_type, result.task_name, result.dataset_type, result.dataset_config,
                result.metric_type, result.metric_config)

    fresh = {key(r) for r in results}
    kept = [r for r in card.data.eval_results or [] if key(r) not in fresh]
    card.data.eval_results = kept + list(results)
    card.data.model_name = card.data.model_name or model_name
    tmp = path.with_name(f".tmp-{CARD_FILE}")
    tmp.write_text(str(card), encoding="utf-8")
    tmp.replace(path)
    return path


__all__ = ["read_card", "rm_model_card", "update_model_index"]
