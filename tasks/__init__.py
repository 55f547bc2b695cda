"""lm-eval task YAMLs of the latent_* tasks and their data loading / metrics (``utils.py``).

The folder sits at the top of the repository and is installed as the package
``lm_eval_latenttts.tasks`` (see pyproject.toml), where the plugin hook points
lm-eval's task index.
"""
