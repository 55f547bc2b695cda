"""Training stage: LatentRM labels (``annotate``), LatentRM training (``rm_training``, ``rm_loop``) and the
recipes that produce the shipped checkpoints (``recipes``); model cards are in ``publishing``."""
