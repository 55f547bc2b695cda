"""LatentRM training data: one example per annotated question, batches of its N trajectories.

A batch of Q questions becomes Q*N rows ``prompt + latent slots`` (right
padded) whose latent slots hold the trajectory's vectors.

Data parallel batches (``global_batches``, ``rank_share``): every process
draws the same permutation of the training questions per epoch
(``epoch_order``) and cuts it into *global* micro-batches of
``processes x batch_size`` questions; process r takes positions r, r + K, ...
of each.  So the questions of an optimizer step are the same for any number
of processes K at equal global batch (K x batch_size x grad_accum); the last
micro-batch of an epoch may be shorter, and a process may get none of it.
"""

from __future__ import annotations

import random

import torch


def question_example(row, answer_ids=None):
    """Tensors of one annotated question (a row of ``load_annotations``).

    ``answer_ids(text) -> list[int]``: also the token ids of each trajectory's decoded answer (``answer_ids``),
    for an RM that reads the answer after the latents (``RM_INPUTS``)."""
    n = len(row["latents"])
    steps = [len(v) for v in row["step_values"]]
    hidden = next((len(lat[0]) for lat in row["latents"] if lat), None)
    if hidden is None:
        raise ValueError(f"Question {row['question_id']}: no trajectory has a latent step.")
    t_max = max(steps)
    latents = torch.zeros(n, t_max, hidden)
    values = torch.zeros(n, t_max)
    mask = torch.zeros(n, t_max, dtype=torch.bool)
    for i, (lat, val) in enumerate(zip(row["latents"], row["step_values"])):
        if lat:
            tens = torch.tensor(lat, dtype=torch.float32)
            if tens.dim() != 2 or tens.shape[1] != hidden or tens.shape[0] != len(val):
                raise ValueError(f"Question {row['question_id']}: malformed latents of trajectory {i}.")
            latents[i, : len(lat)] = tens
            values[i, : len(val)] = torch.tensor(val, dtype=torch.float32)
            mask[i, : len(val)] = True
    out = {
        "question_id": int(row["question_id"]),
        "prompt_ids": torch.tensor(row["prompt_ids"], dtype=torch.long),
        "latents": latents,
        "values": values,
        "mask": mask,
        "correct": torch.tensor(row["correct"], dtype=torch.bool),
    }
    if answer_ids is not None:
        out["answer_ids"] = [torch.tensor(answer_ids(text), dtype=torch.long) for text in row["answer_texts"]]
    return out


RM_INPUTS = ("latents", "latents+answer")  # what the RM reads after the prompt (TrainConfig.rm_input)


def answer_tokenizer(tokenizer):
    """``text -> ids`` of a decoded answer as the backbone wrote it: its tokens, then EOS."""
    eos = tokenizer.eos_token_id

    def encode(text):
        return list(tokenizer(text or "", add_special_tokens=False)["input_ids"]) + [eos]

    return encode


class RMCollator:
    """Groups the N trajectories of each question: Q questions -> Q*N_max right-padded rows.

    Returns input_ids / attention_mask / position_ids (rows, L), latents (rows, T, H), slot_index
    (rows, T) positions of the latent slots, and values / mask (Q, N, T), traj_mask (Q, N), correct (Q, N).

    With ``end_id`` (an RM that reads the answer, ``rm_input="latents+answer"``) each row goes on after its
    latents with the end marker and the trajectory's answer tokens (``answer_ids`` of the examples), and an
    outcome step is added after the T latent steps: its score is read at the answer's last token and its
    label is the trajectory's final correctness (so values / mask / slot_index have T + 1 steps).
    """

    def __init__(self, latent_id, pad_token_id, end_id=None):
        self.latent_id = int(latent_id)
        self.pad_token_id = int(pad_token_id)
        self.end_id = None if end_id is None else int(end_id)

    def __call__(self, examples):
        if self.end_id is not None:
            return self._with_answers(examples)
        q = len(examples)
        n = max(e["latents"].shape[0] for e in examples)
        t = max(e["latents"].shape[1] for e in examples)
        h = examples[0]["latents"].shape[2]
        length = max(e["prompt_ids"].numel() for e in examples) + t
        rows = q * n
        input_ids = torch.full((rows, length), self.pad_token_id, dtype=torch.long)
        attention = torch.zeros(rows, length, dtype=torch.long)
        latents = torch.zeros(rows, t, h)
        slot_index = torch.zeros(rows, t, dtype=torch.long)
        values = torch.zeros(q, n, t)
        mask = torch.zeros(q, n, t, dtype=torch.bool)
        traj_mask = torch.zeros(q, n, dtype=torch.bool)
        correct = torch.zeros(q, n, dtype=torch.bool)
        for i, e in enumerate(examples):
            if e["latents"].shape[2] != h:
                raise ValueError("Latent vectors of different widths in one batch; the annotation is malformed.")
            p = e["prompt_ids"]
            ni, ti = e["latents"].shape[:2]
            values[i, :ni, :ti] = e["values"]
            mask[i, :ni, :ti] = e["mask"]
            traj_mask[i, :ni] = True
            correct[i, :ni] = e["correct"]
            for j in range(ni):
                r = i * n + j
                k = int(e["mask"][j].sum())
                input_ids[r, : p.numel()] = p
                input_ids[r, p.numel() : p.numel() + k] = self.latent_id
                attention[r, : p.numel() + k] = 1
                latents[r, :ti] = e["latents"][j]
                slot_index[r] = p.numel() + torch.arange(t).clamp(max=max(k - 1, 0))
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        return {
            "input_ids": input_ids,
            "attention_mask": attention,
            "position_ids": positions,
            "latents": latents,
            "slot_index": slot_index,
            "values": values,
            "mask": mask,
            "traj_mask": traj_mask,
            "correct": correct,
            "question_id": torch.tensor([e["question_id"] for e in examples], dtype=torch.long),
        }


    def _with_answers(self, examples):
        end_id = self.end_id
        self.end_id = None
        try:
            batch = self(examples)  # the latent part, then the answers appended to each row
        finally:
            self.end_id = end_id
        q, n, t = batch["values"].shape
        answers = [[e["answer_ids"][j] if j < len(e["answer_ids"]) else torch.zeros(0, dtype=torch.long)
                    for j in range(n)] for e in examples]
        extra = 1 + max(a.numel() for row in answers for a in row)
        rows, length = batch["input_ids"].shape
        input_ids = torch.cat([batch["input_ids"], torch.full((rows, extra), self.pad_token_id)], 1)
        attention = torch.cat([batch["attention_mask"], torch.zeros(rows, extra, dtype=torch.long)], 1)
        outcome = torch.zeros(rows, 1, dtype=torch.long)
        for i in range(q):
            for j in range(n):
                r = i * n + j
                if not batch["traj_mask"][i, j]:
                    continue
                start = int(batch["attention_mask"][r].sum())
                tokens = torch.cat([torch.tensor([end_id]), answers[i][j]])
                input_ids[r, start:start + tokens.numel()] = tokens
                attention[r, start:start + tokens.numel()] = 1
                outcome[r, 0] = start + tokens.numel() - 1
        mask = torch.cat([batch["mask"], batch["traj_mask"][..., None]], -1)
        values = torch.cat([batch["values"], batch["correct"].float()[..., None]], -1)
        return {**batch, "input_ids": input_ids, "attention_mask": attention,
                "position_ids": (attention.cumsum(-1) - 1).clamp(min=0),
                "latents": batch["latents"], "slot_index": torch.cat([batch["slot_index"], outcome], 1),
                "values": values, "mask": mask}


def split_questions(ids, fraction, seed):
    """Deterministic train / held-out split of question ids."""
    ids = sorted(ids)
    if fraction <= 0 or len(ids) < 2:
        return ids, []
    rng = random.Random(f"rm-split:{seed}")
    shuffled = ids[:]
    rng.shuffle(shuffled)
    k = min(max(1, round(len(ids) * fraction)), len(ids) - 1)
    held = set(shuffled[:k])
    return [i for i in ids if i not in held], sorted(held)


def epoch_order(count: int, seed: int, epoch: int) -> list[int]:
    """The order of ``count`` training questions in ``epoch``: the same permutation on every process."""
    generator = torch.Generator().manual_seed(seed * 1000003 + epoch)
    return torch.randperm(count, generator=generator).tolist()


def global_batches(order: list[int], batch_size: int, processes: int) -> list[list[int]]:
    """``order`` cut into global micro-batches of ``processes * batch_size`` (the last may be shorter)."""
    size = batch_size * processes
    return [order[i : i + size] for i in range(0, len(order), size)]


def rank_share(batch: list[int], rank: int, processes: int) -> list[int]:
    """Process ``rank``'s questions of a global micro-batch (positions rank, rank + K, ...; may be empty)."""
    return batch[rank::processes]


class QuestionExamples(torch.utils.data.Dataset):
    """The annotated questions ``indices`` of ``ds`` as training examples."""

    def __init__(self, ds, indices, answer_ids=None):
        self.ds, self.indices, self.answer_ids = ds, list(indices), answer_ids

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        return question_example(self.ds[self.indices[i]], self.answer_ids)


__all__ = ["QuestionExamples", "RM_INPUTS", "RMCollator", "answer_tokenizer", "epoch_order", "global_batches", "question_example", "rank_share",
           "split_questions"]
