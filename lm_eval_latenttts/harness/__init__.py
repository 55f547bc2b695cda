"""The lm-eval adapter: the model ``latent_tts`` (``model``), its arguments (``arguments``) and the
discovery hook that makes plain ``lm_eval`` see it (``plugin``).  Importing this package is cheap
(the .pth hook imports ``plugin`` at every Python start)."""
