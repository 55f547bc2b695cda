"""The model card (README.md) of a LatentRM trained by ``rm_training``, generated from the run summary."""

from __future__ import annotations


def _fmt(value):
    if isinstance(value, float):
        return f"{value:.4f}"
    return "n/a" if value is None else str(value)


def model_card(summary, rm=None, repo_id=None):
    """Markdown model card with YAML front matter, from the ``training_summary.json`` dict."""
    ann = summary.get("annotation_config") or {}
    cfg = summary.get("config") or {}
    before = summary.get("eval_before") or {}
    after = summary.get("eval_after") or {}
    arch = type(rm).__name__ if rm is not None else "LatentRM"
    backbone = ann.get("model") or summary.get("init") or "unknown"
    name = repo_id or cfg.get("push_to_hub") or "path/to/this/folder"
    sampling = ann.get("sampling")
    strength = (f"dropout p={ann.get('dropout_p')}" if sampling == "dropout"
                else f"Gaussian noise sigma={ann.get('noise_std')}" if sampling == "noise" else "n/a")
    n = ann.get("num_trajectories", summary.get("trajectories_per_question"))
    loss = cfg.get("loss", "contrastive")
    loss_text = (
        "step-wise contrastive loss: at each latent step t, softmax of the step scores over the N trajectories "
        "of a question; loss = -sum_n label[n,t] log softmax[n,t], summed over t, averaged over questions"
        if loss == "contrastive"
        else "binary cross-entropy of sigmoid(step score) against the Monte Carlo step value"
    )
    lines = [
        "---",
        "library_name: transformers",
        "pipeline_tag: token-classification",
        "tags:",
        "- latent-reasoning",
        "- reward-model",
        "- test-time-scaling",
        "- lm-eval-latenttts",
        "---",
        "",
        f"# LatentRM ({arch})",
        "",
        "A reward model for latent reasoning trajectories (Parallel Test-Time Scaling for Latent Reasoning "
        "Models, arXiv 2510.07745). It reads a question and a latent trajectory (the latent slots hold the "
        "backbone's fed-back vectors) and emits one score per latent step; a trajectory's score is the sum "
        "of its step scores. Use it for best-of-N selection or RM-guided beam search.",
        "",
        "## Training",
        "",
        f"- Initialised from: `{summary.get('init')}` ({summary.get('init_kind', 'n/a')})",
        f"- Backbone whose latents it scores: `{backbone}`",
        f"- Data: `{ann.get('data', summary.get('annotations'))}`; {summary.get('train_questions')} training "
        f"questions, {summary.get('eval_questions')} held out",
        f"- Labels: step-wise Monte Carlo values, N = {n} trajectories per question, M = "
        f"{ann.get('num_continuations', 'n/a')} continuations per step, sampling: {strength}; questions whose "
        "N trajectories were all right or all wrong dropped" + (" (kept here)" if ann.get("keep_all") else ""),
        f"- Loss: {loss_text}",
        f"- Optimisation: lr {cfg.get('lr')}, cosine schedule, warm-up {cfg.get('warmup_ratio')}, "
        f"{summary.get('optimizer_steps')} optimizer steps, batch {cfg.get('batch_size')} questions x "
        f"{cfg.get('grad_accum')} accumulation, precision {cfg.get('precision')}"
        + (f", LoRA r={cfg.get('lora_r')} (merged)" if cfg.get("lora_r") else ", full fine-tuning"),
        f"- Training loss: {_fmt(summary.get('first_loss'))} -> {_fmt(summary.get('last_loss'))}",
        "",
        "## Evaluation (held-out annotated questions)",
        "",
        "| metric | before training | after training |",
        "| --- | --- | --- |",
        f"| recall@1 (RM's top trajectory is right) | {_fmt(before.get('eval_recall_at_1'))} | "
        f"{_fmt(after.get('eval_recall_at_1'))} |",
        f"| random pick (mean trajectory accuracy) | {_fmt(before.get('eval_random_pick'))} | "
        f"{_fmt(after.get('eval_random_pick'))} |",
        f"| loss | {_fmt(before.get('eval_loss'))} | {_fmt(after.get('eval_loss'))} |",
        "",
        "Held-out questions come from the same annotation (each has at least one right and one wrong "
        "trajectory), so these numbers measure selection among mixed trajectories, not benchmark accuracy.",
        "",
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
        'prompt = tok(["Start at 47, plus 8, then times 3. Answer mod 100?\\n<|start-latent|>"], return_tensors="pt")',
        f"N = {n or 8}",
        "out = backbone.generate(**prompt, num_return_sequences=N, latent_sampling=\"dropout\", dropout_p=0.2,",
        "                        seed=0, return_dict_in_generate=True)",
        "scores = rm.score_rollouts(out)                    # step_scores (rows, steps), trajectory_scores (rows,)",
        "best = scores.trajectory_scores.view(-1, N).argmax(-1)",
        "print(tok.decode(out.answer_ids[best[0]], skip_special_tokens=True))",
        "```",
        "",
        "Trained with `python -m lm_eval_latenttts train-rm` (lm-eval-latenttts); `training_summary.json` holds "
        "the full run record.",
        "",
    ]
    return "\n".join(lines)


__all__ = ["model_card"]
