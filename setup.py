"""Packaging step that pyproject.toml alone cannot express: the lm-eval plugin ``.pth`` file.

``lm_eval_latenttts_hook.pth`` must land at the top of site-packages, next to
the packages, for Python to run it at start-up (it installs the import hook of
``lm_eval_latenttts.harness.plugin``, so that plain ``lm_eval`` finds
``--model latent_tts`` and the ``latent_*`` tasks).  ``build_py`` below writes
it into the root of the build:

* ``pip install .`` (a wheel): into ``build_lib``, which becomes the purelib root.
* ``pip install -e .`` (PEP 660 editable wheel): setuptools builds the editable
  wheel from the ``install_lib`` folder it prepared for the wheel's contents,
  so the file is written there too.

Everything else (metadata, dependencies, entry points) lives in pyproject.toml.
"""

import os

from setuptools import setup
from setuptools.command.build_py import build_py

PTH_NAME = "lm_eval_latenttts_hook.pth"
# One line; a .pth line starting with "import" is executed.  It must never fail
# (a stale .pth of an uninstalled package would otherwise print a traceback at
# every interpreter start), and must stay cheap: the hook imports nothing heavy.
PTH_CONTENT = (
    "import sys; exec('try:\\n from lm_eval_latenttts.harness.plugin import install\\n install()\\n"
    "except Exception:\\n pass')\n"
)


class build_py_with_pth(build_py):
    def run(self):
        super().run()
        targets = [self.build_lib]
        if getattr(self, "editable_mode", False):
            install = self.distribution.get_command_obj("install")
            if getattr(install, "install_lib", None):
                targets.append(install.install_lib)
        for folder in targets:
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, PTH_NAME), "w", encoding="utf-8") as f:
                f.write(PTH_CONTENT)

    def get_outputs(self, include_bytecode=1):
        return list(super().get_outputs(include_bytecode)) + [os.path.join(self.build_lib, PTH_NAME)]


setup(cmdclass={"build_py": build_py_with_pth})
