"""Publishing stage: model cards (``model_card``), Hub upload (``hub``), what results record about the
checkpoints (``model_info``, ``identity``) and the export of lm-eval results to the Hub's formats
(``eval_results``)."""
