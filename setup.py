"""Packaging hook (everything else is in pyproject.toml): a built wheel carries the course itself.

`python -m build` puts the chapters, the problem sets and the data (the zoo's checkpoints, MNIST-5k)
into the wheel as package data under dpm_lab/_course/, where `dl.store` and `dpm_lab.course` look
when there is no checkout around the package, so `pip install dpm_lab-*.whl` then `dpm-lab lab`
gives the whole course from any folder. An editable install (`pip install -e .`, as run.sh does)
copies nothing: it reads the checkout's folders.
"""
import pathlib
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

COURSE = {"chapters": "[0-9][0-9]_*.ipynb", "problems": "ch[0-9][0-9].md", "data": "*"}


class build_py_with_course(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        here = pathlib.Path(__file__).resolve().parent
        dest = pathlib.Path(self.build_lib) / "dpm_lab" / "_course"
        for folder, pattern in COURSE.items():
            src = here / folder
            if not src.is_dir():
                raise SystemExit(f"setup.py: {src} is missing: build the wheel from a checkout or its sdist")
            for path in sorted(src.rglob(pattern)):
                if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".py":
                    target = dest / folder / path.relative_to(src)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(path, target)


setup(cmdclass={"build_py": build_py_with_course})
