"""Training stage: LatentRM labels (``annotate``), LatentRM training (``rm_training``), model cards
(``model_card``) and the recipes that produce the shipped checkpoints (``recipes``)."""
