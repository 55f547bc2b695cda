"""The referee evidence's library (``benchmarks/evidence.py`` is the command): is a sampled latent a distinct
reasoning path, does the LatentRM see it, and what does token chain of thought reach at the same compute?

* :mod:`.readout` -- the task's true intermediates, the logit lens, and read-out / follow metrics;
* :mod:`.probe` -- a 100-way probe that reads a latent as a value, or as "no number";
* :mod:`.trajectories` -- N latent rollouts and N token chains of thought per question;
* :mod:`.accounting` -- generated lengths, forward token positions and FLOPs of those samples;
* :mod:`.ranking` -- within-question AUROC and vote share;
* :mod:`.bootstrap` and :mod:`.equal_compute` -- intervals over questions, and two methods compared at
  equal compute with a paired bootstrap.

The public names are re-exported here: ``import evidence_lib as ev; ev.auroc(...)`` with ``benchmarks/`` on
``sys.path`` (as it is for the benchmark scripts).  It lives beside the benchmarks, not in the installed
package: nothing a user of the plugin runs imports it.
"""

from evidence_lib.accounting import (cot_cost, cot_flops, cot_positions, forward_flops, generated_lengths,
    latent_cost, latent_flops, latent_positions)
from evidence_lib.bootstrap import bootstrap_indices, bootstrap_ci, percentile_interval
from evidence_lib.equal_compute import difference_at_equal_compute, interp_log
from evidence_lib.probe import NO_NUMBER, LatentProbe, fit_probe, threshold_from_heldout
from evidence_lib.ranking import (across_pair_types, across_question_auroc, auroc, centred, pair_counts,
    paired_within_difference, score_by_difficulty, spearman, vote_shares, within_question_auroc)
from evidence_lib.readout import (answer_from_first, follow_metrics, ratio_ci, intermediates, logit_lens_digit,
    parse_steps, readout_metrics)
from evidence_lib.trajectories import (COT_SUFFIX, cot_sample, first_n, latent_rollouts,
    cot_noise_seed, sampling_kwargs)

__all__ = [
    "across_pair_types", "across_question_auroc", "centred", "paired_within_difference", "ratio_ci",
    "score_by_difficulty", "spearman", "COT_SUFFIX", "LatentProbe", "NO_NUMBER", "answer_from_first", "auroc", "bootstrap_indices", "bootstrap_ci",
    "cot_cost", "cot_flops", "cot_positions", "latent_cost", "cot_sample", "difference_at_equal_compute", "first_n", "fit_probe",
    "follow_metrics", "forward_flops", "generated_lengths", "interp_log", "intermediates", "latent_flops",
    "latent_positions", "latent_rollouts", "logit_lens_digit", "pair_counts", "parse_steps", "percentile_interval",
    "cot_noise_seed", "readout_metrics", "sampling_kwargs", "threshold_from_heldout", "vote_shares",
    "within_question_auroc",
]
