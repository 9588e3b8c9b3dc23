"""The example notebooks are stored without outputs and run top to bottom (nbclient, the `test` extra)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import medfuse

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))


def test_both_notebooks_exist():
    assert {p.name for p in NOTEBOOKS} >= {"quickstart.ipynb", "ensemble_selection.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: clear the outputs"


def _outputs(nb, mime):
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if mime in o.get("data", {})]


@pytest.mark.parametrize(("name", "figures", "tables"), [
    ("quickstart.ipynb", 2, 1),            # slice + per-class Dice; the overlap table
    ("ensemble_selection.ipynb", 2, 1),    # ranking + box plot; the search result table
])
def test_notebook_runs_top_to_bottom(name, figures, tables, tmp_path, monkeypatch):
    # the kernel (a subprocess started in tmp_path) imports the medfuse under test, not another install
    source = str(Path(medfuse.__file__).resolve().parents[1])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([source, *filter(None, [os.environ.get("PYTHONPATH")])]))
    nb = nbformat.read(EXAMPLES / name, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError on the first failing cell
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    assert len(_outputs(nb, "image/png")) >= figures
    html = _outputs(nb, "text/html")
    assert len(html) >= tables and all("<table>" in o["data"]["text/html"] for o in html[:tables])
