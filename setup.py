"""Build hook: ships the top-level ``conf/`` inside the package as ``sppo_runner/conf``.

``conf/`` stays the only source of the configs: a source checkout or an editable install reads it
in place, and a built wheel (``pip install .``, ``uv build``) carries a copy, so that an installed
``sppo-run`` finds its configs from any folder (``cli._conf_dir``). Everything else is declared in
``pyproject.toml``.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

CONF = Path(__file__).resolve().parent / "conf"


class BuildWithConf(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads conf/ in place
        shutil.copytree(CONF, Path(self.build_lib) / "sppo_runner" / "conf", dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__"))


setup(cmdclass={"build_py": BuildWithConf})
