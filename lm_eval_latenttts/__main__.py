"""``python -m lm_eval_latenttts <subcommand>`` (also ``accelerate launch -m lm_eval_latenttts annotate ...``)."""

import sys

from lm_eval_latenttts.cli import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m lm_eval_latenttts"))
