"""examples/paper_figures.ipynb runs from top to bottom (nbclient) on a small study, so it never rots."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from study_data import make_folder, study_yaml

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "paper_figures.ipynb"


@pytest.mark.slow  # a kernel's start-up and a study: a few seconds on an idle machine
def test_paper_notebook_executes_on_a_small_study(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "imgs"
    config = study_yaml(tmp_path / "study.yaml", folder, make_folder(folder, corrupt=False), ["random", "heads"])
    nb = nbformat.read(NOTEBOOK, as_version=4)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1  # the one cell a reader edits, and the one this test replaces
    params[0].source = (f"CONFIG = {str(config)!r}\nOVERRIDES = []\nRUN = {str(tmp_path / 'run')!r}\n"
                        f"SCHEMES = ['random', 'heads']\nOUT = {str(tmp_path / 'paper')!r}\n")
    src = str(Path(__file__).resolve().parents[1] / "src")  # the kernel imports this checkout's lsc, installed or not
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH", "")) if p))
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    paper = tmp_path / "paper"
    assert sorted(p.name for p in paper.iterdir()) == ["lpips_vs_words.pdf", "lpips_vs_words.png", "strip.pdf", "strip.png",
                                                       "table.tex"]
    assert all((paper / n).read_bytes().startswith(b"%PDF") for n in ("strip.pdf", "lpips_vs_words.pdf"))
    table = (paper / "table.tex").read_text()
    assert r"\toprule" in table and table.count(r" \\") == 1 + 2  # the header and one row per chosen scheme
    text = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []) if o.output_type == "stream")
    assert "8 ok, 0 failed" in text  # 4 images x 2 schemes
