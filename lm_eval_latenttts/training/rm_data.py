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


def question_example(row):
    """Tensors of one annotated question (a row of ``load_annotations``)."""
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
    return {
        "question_id": int(row["question_id"]),
        "prompt_ids": torch.tensor(row["prompt_ids"], dtype=torch.long),
        "latents": latents,
        "values": values,
        "mask": mask,
        "correct": torch.tensor(row["correct"], dtype=torch.bool),
    }


class RMCollator:
    """Groups the N trajectories of each question: Q questions -> Q*N_max right-padded rows.

    Returns input_ids / attention_mask / position_ids (rows, L), latents (rows, T, H), slot_index
    (rows, T) positions of the latent slots, and values / mask (Q, N, T), traj_mask (Q, N), correct (Q, N).
    """

    def __init__(self, latent_id, pad_token_id):
        self.latent_id = int(latent_id)
        self.pad_token_id = int(pad_token_id)

    def __call__(self, examples):
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

    def __init__(self, ds, indices):
        self.ds, self.indices = ds, list(indices)

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        return question_example(self.ds[self.indices[i]])


__all__ = ["QuestionExamples", "RMCollator", "epoch_order", "global_batches", "question_example", "rank_share",
           "split_questions"]
