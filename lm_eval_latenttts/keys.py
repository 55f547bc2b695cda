"""The names a user types for a ``latent_tts`` run, in one table: ``KEYS``.

Each ``Key`` is one ``--model_args`` / ``--gen_kwargs`` key of ``lm_eval --model
latent_tts``: its name, the ``hf_modeling.LatentGenerationConfig`` field it
sets (``None`` for an option of loading and batching, which only
``--model_args`` takes), the values it takes, its default and what it means.
The harness (``harness.arguments``), the CLI's annotate options, the exported
results (``publishing``) and the docs read this table; the config validates the
values and owns the defaults of the generation keys (``Key.default_value``
reads them), so nothing here repeats them.  The selection strategies a run can
name (``aggregate``) are the registry's (``scaling.strategies``).

``IGNORED_GEN_KEYS``: the token-generation keys that lm-eval tasks or users pass
to every model; a latent model decodes its answer greedily after the latent
phase, so they are ignored (``BOILERPLATE`` silently, the others with a warning
unless their value means greedy anyway).

Pure Python: imported before anything heavy.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Key:
    """One key: ``name`` as typed, the config ``field`` it sets (None: a load option), the ``values`` it takes
    (as documented), what it ``means``, and for a load option its ``default`` (text as documented)."""

    name: str
    field: str | None
    values: str
    meaning: str
    default: object = None

    def default_value(self):
        """The default: a load option's own, a generation key's from ``LatentGenerationConfig`` (a checkpoint's
        ``generation_config.json`` overrides it for that checkpoint)."""
        if self.field is None:
            return self.default
        from hf_modeling.generation_config import ADAPTIVE_DEFAULTS, INHERITED_DEFAULTS, LATENT_DEFAULTS

        return {**LATENT_DEFAULTS, **ADAPTIVE_DEFAULTS, **INHERITED_DEFAULTS}[self.field]


KEYS = (
    Key("pretrained", None, "Hub id or folder", "a COCONUT / CODI / CoLaR checkpoint", "the shipped arith-coconut"),
    Key("rm", None, "Hub id or folder | none", "the LatentRM that scores latent steps",
        "the shipped arith-rm (with the shipped backbone), else none"),
    Key("sampling", "latent_sampling", "none | dropout | noise", "how the N rollouts differ"),
    Key("dropout_p", "dropout_p", "float in [0, 1)", "Monte Carlo dropout probability (none: the backbone's "
        "typical value)"),
    Key("noise_std", "noise_std", "float >= 0", "sigma of the Gaussian noise on fed-back latents (none: the "
        "backbone's typical value)"),
    Key("dropout_scope", "dropout_scope", "all | latent", "dropout on the prompt and the latent steps, or on the "
        "latent steps only"),
    Key("n", "num_return_sequences", "int >= 1", "rollouts per question (N)"),
    Key("aggregate", "aggregate", "the name of a registered strategy (scaling.strategies.STRATEGIES)",
        "how one answer is chosen (none: best_of_n with a LatentRM, else majority)"),
    Key("beams", "latent_beams", "int >= 1", "RM-guided beam search: B beams"),
    Key("candidates", "latent_candidates", "int >= 1", "RM-guided beam search: C candidates per beam and step"),
    Key("latent_length", "latent_length", "int >= 0 | none", "latent steps (fixed backbones) or their cap (CoLaR)"),
    Key("max_new_tokens", "max_new_tokens", "int >= 1", "answer tokens decoded after the latent phase"),
    Key("seed", "seed", "int | none", "sample j of a question depends on (seed, question, j) only; none: one seed "
        "drawn for the run, logged and recorded"),
    Key("adaptive", "adaptive", "true | false", "draw rollouts in rounds and stop when the answer is settled"),
    Key("adaptive_rule", "adaptive_rule", "exact | confidence | esc", "when a question stops (scaling.adaptive)"),
    Key("adaptive_round", "adaptive_round", "int >= 1", "rollouts per question and round"),
    Key("adaptive_threshold", "adaptive_threshold", "float in (0, 1)", "the confidence rule's threshold"),
    Key("adaptive_votes", "adaptive_votes", "count | rm", "the confidence rule's votes (rm: RM-weighted)"),
    Key("greedy", "greedy_baseline", "true | false", "also decode each question greedily (the greedy row)"),
    Key("dtype", None, "auto | float32 | bfloat16 | float16", "the weights' dtype", "auto"),
    Key("device", None, "cpu | cuda | cuda:N | mps", "where the models run", "picked: cuda if available"),
    Key("batch_size", None, "int >= 1 | auto", "questions per generate call at N rollouts; auto halves on "
        "out-of-memory; results do not depend on it", "about 128 rollouts per call on CPU (128 // n questions), "
        "auto on CUDA, sized by the memory model (harness.setup.pick_batch_size, scaling.memory)"),
    Key("max_batch_size", None, "int >= 1", "the cap of batch_size=auto", "512 on CUDA, 64 elsewhere"),
    Key("revision", None, "Hub revision", "the revision of pretrained and rm", "main"),
)
BY_NAME = {key.name: key for key in KEYS}
# short key -> LatentGenerationConfig field (the keys of a setting), and back
GENERATION_KEYS = {key.name: key.field for key in KEYS if key.field is not None}
LOAD_KEYS = tuple(key.name for key in KEYS if key.field is None)
# config field -> the name a user of the harness types: errors and warnings of the config are worded with these
# (``hf_modeling.generation_config.SettingError.named``), never rewritten afterwards
SHORT_NAMES = {**{field: name for name, field in GENERATION_KEYS.items()}, "rm": "rm=<Hub id or folder>"}
# what a score depends on besides the checkpoints and the questions (the results record them per task)
SCORE_KEYS = tuple(name for name in GENERATION_KEYS if name not in ("adaptive", "greedy"))
BEAM_KEYS = ("beams", "candidates")  # only with a search (aggregate=beam)
ADAPTIVE_KEYS = ("adaptive_rule", "adaptive_round", "adaptive_threshold", "adaptive_votes")  # only in rounds

BOILERPLATE, WARNED = "boilerplate", "warned"
IGNORED_GEN_KEYS = {
    "until": BOILERPLATE, "do_sample": WARNED, "temperature": WARNED, "top_p": WARNED, "top_k": WARNED,
    "min_p": WARNED, "max_gen_toks": BOILERPLATE, "num_beams": WARNED, "repetition_penalty": WARNED,
    "typical_p": WARNED, "max_length": BOILERPLATE, "stop": BOILERPLATE,
}
PAYLOAD_KEY = "latent_tts_payload"  # our tasks' marker: "return the typed result of all N candidates"

__all__ = ["ADAPTIVE_KEYS", "BEAM_KEYS", "BOILERPLATE", "BY_NAME", "GENERATION_KEYS", "IGNORED_GEN_KEYS", "KEYS",
           "Key", "LOAD_KEYS", "PAYLOAD_KEY", "SCORE_KEYS", "SHORT_NAMES", "WARNED"]
