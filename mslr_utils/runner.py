"""Run the notebooks headless with papermill, and keep the committed copies clean.

    python -m mslr_utils.runner run --profile default      # every notebook, profile values
    python -m mslr_utils.runner run --profile smoke --notebooks 01_reviews_mslr
    python -m mslr_utils.runner refresh                    # re-execute committed copies with defaults

A profile is ``notebooks/profiles/<profile>/<notebook>.yaml``: parameter values passed
to papermill as with ``-f``. Executed copies go to ``runs/executed/<profile>/``. The
command exits non-zero and names the notebook and cell of the first failure.
"""

from __future__ import annotations

import argparse
import ast
import logging
import os
import sys
from pathlib import Path

import nbformat
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
PROFILE_DIR = NOTEBOOK_DIR / "profiles"
EXECUTED_DIR = REPO_ROOT / "runs" / "executed"
KERNEL_NAME = "python3"
# ipykernel 7 warns on stderr at every start that its local TCP sockets are unencrypted.
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=ERROR"]
QUIET_ENV = {"TQDM_DISABLE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_HUB_OFFLINE": "1",
             "TRANSFORMERS_OFFLINE": "1", "MPLBACKEND": "Agg", "PYDEVD_DISABLE_FILE_VALIDATION": "1"}


def notebooks(selected: list[str] | None = None) -> list[Path]:
    """Return the numbered notebooks (``NN_topic.ipynb``), optionally only the named ones."""
    found = sorted(p for p in NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
    if not selected:
        return found
    by_stem = {p.stem: p for p in found}
    missing = [s for s in selected if s not in by_stem]
    if missing:
        raise SystemExit(f"unknown notebook {missing}: choose from {sorted(by_stem)}")
    return [by_stem[s] for s in selected]


def load_profile(profile: str, notebook: Path) -> dict | None:
    """Return the profile's parameters for ``notebook``, or None when the profile has no file for it.

    A profile folder that does not exist at all is an error, so a misspelt name fails.
    """
    folder = PROFILE_DIR / profile
    if not folder.is_dir():
        available = sorted(p.name for p in PROFILE_DIR.iterdir() if p.is_dir()) if PROFILE_DIR.exists() else []
        raise SystemExit(f"profile folder {shown(folder)} not found: choose a profile from {available}")
    path = folder / f"{notebook.stem}.yaml"
    if not path.exists():
        return None
    with open(path, encoding="utf-8") as handle:
        values = yaml.safe_load(handle) or {}
    if not isinstance(values, dict):
        raise SystemExit(f"{shown(path)}: expected a mapping of parameter names to values")
    return values


def shown(path: Path) -> str:
    """Return ``path`` relative to the repository when it is inside it."""
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def quiet_environment() -> None:
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)


def failed_cell(notebook_path: Path) -> str:
    """Describe the first cell with an error output in an executed notebook."""
    nb = nbformat.read(notebook_path, as_version=4)
    code_index = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        code_index += 1
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                first_line = cell.source.splitlines()[0] if cell.source else ""
                return f"code cell {code_index} ({first_line!r}): {output.get('ename')}: {output.get('evalue')}"
    return "no cell with an error output"


def check_parameter_names(notebook: Path, parameters: dict) -> None:
    """Raise SystemExit for a parameter the notebook's ``parameters`` cell does not define."""
    from papermill.inspection import inspect_notebook

    known = set(inspect_notebook(str(notebook)))
    unknown = sorted(set(parameters) - known)
    if unknown:
        raise SystemExit(f"{notebook.name} has no parameter {unknown}: its parameters are {sorted(known)}")


# papermill's own lines around each cell and notebook; the cells' output is what a reader wants.
PAPERMILL_MARKERS = ("Executing Cell", "Ending Cell", "Executing notebook with kernel", "Input Notebook",
                     "Output Notebook", "Working directory")


class SkipPapermillMarkers(logging.Filter):
    """Drop papermill's per-cell and per-notebook marker lines and blank lines from its log."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage().strip()
        return bool(message) and not message.startswith(PAPERMILL_MARKERS)


def run_notebooks(profile: str, selected: list[str] | None, output_dir: Path, overrides: dict) -> int:
    import papermill

    quiet_environment()
    # Cell outputs (epoch logs, tables) stream to the terminal while a notebook runs.
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    papermill_log = logging.getLogger("papermill")
    if not any(isinstance(f, SkipPapermillMarkers) for f in papermill_log.filters):
        papermill_log.addFilter(SkipPapermillMarkers())
    failures = 0
    for notebook in notebooks(selected):
        profile_values = load_profile(profile, notebook)
        if profile_values is None:
            print(f"skipping {shown(notebook)}: profile {profile!r} has no {notebook.stem}.yaml")
            continue
        parameters = {**profile_values, **overrides}
        check_parameter_names(notebook, parameters)
        output = output_dir / profile / notebook.name
        output.parent.mkdir(parents=True, exist_ok=True)
        print(f"running {shown(notebook)} with profile {profile!r} -> {shown(output)}")
        try:
            papermill.execute_notebook(
                str(notebook),
                str(output),
                parameters=parameters,
                kernel_name=KERNEL_NAME,
                cwd=str(NOTEBOOK_DIR),
                progress_bar=False,
                log_output=True,
                extra_arguments=KERNEL_ARGUMENTS,
            )
        except papermill.PapermillExecutionError as error:
            failures += 1
            # exec_count numbers the executed copy, which has papermill's injected-parameters cell.
            print(
                f"FAILED {notebook.name}: cell {error.exec_count} of the executed copy {shown(output)} "
                f"raised {error.ename}: {error.evalue}",
                file=sys.stderr,
            )
        except Exception as error:  # a kernel crash or timeout reaches here, not a cell error
            failures += 1
            print(f"FAILED {notebook.name}: {type(error).__name__}: {error}; see {output}", file=sys.stderr)
    return 1 if failures else 0


def clean_notebook(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Strip timings, papermill and widget metadata, and fix the kernel name."""
    nb.metadata.pop("papermill", None)
    nb.metadata.pop("widgets", None)
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": KERNEL_NAME}
    for cell in nb.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        cell.metadata.pop("widgets", None)
        if "tags" in cell.metadata and not cell.metadata["tags"]:
            del cell.metadata["tags"]
    return nb


def refresh_notebooks(selected: list[str] | None) -> int:
    """Execute each notebook with its own defaults and write it back, cleaned."""
    import papermill

    quiet_environment()
    for notebook in notebooks(selected):
        print(f"refreshing {shown(notebook)}")
        executed = papermill.execute_notebook(
            str(notebook), None, kernel_name=KERNEL_NAME, cwd=str(NOTEBOOK_DIR), progress_bar=False,
            extra_arguments=KERNEL_ARGUMENTS,
        )
        # papermill marks the injected-parameters cell; with no parameters there is none.
        nbformat.write(clean_notebook(executed), str(notebook))
    return 0


def parse_value(text: str) -> object:
    """Read a command-line value: a Python literal first, else YAML.

    Python literals read ``5e-4`` and ``[1e-4, 5e-4]`` as numbers (YAML 1.1 reads them
    as strings); YAML adds ``null``, ``true`` and bare strings such as paths.
    """
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return yaml.safe_load(text)


def parse_override(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    name, value = text.split("=", 1)
    return name, parse_value(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute notebooks with a profile")
    run.add_argument("--profile", default="default", help="profile folder under notebooks/profiles (default: default)")
    run.add_argument("--notebooks", nargs="*", help="notebook names without .ipynb (default: all)")
    run.add_argument("--output-dir", type=Path, default=EXECUTED_DIR, help="folder for executed copies")
    run.add_argument("-p", "--parameter", action="append", type=parse_override, default=[],
                     help="NAME=VALUE override on top of the profile (YAML value)")
    refresh = sub.add_parser("refresh", help="re-execute the committed notebooks with their defaults")
    refresh.add_argument("--notebooks", nargs="*", help="notebook names without .ipynb (default: all)")
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            return run_notebooks(args.profile, args.notebooks, args.output_dir, dict(args.parameter))
        return refresh_notebooks(args.notebooks)
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume from the last finished epoch", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
