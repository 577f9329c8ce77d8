"""The hard-example notebook runs end to end (nbclient, tiny data, a demo model trained by the notebook itself), and
refuses a checkpoint that does not match instead of running with an unloaded module (as the published notebook did)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest
import torch
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from nbformat.v4 import new_code_cell
from medseg.phantom.tiny import write_tiny_acdc

from medseg.models.advanced_triplet_recon_segmentation_model import AdvancedTripletReconSegmentationModel as Model
from medseg.visualization import METHODS, QUICKSTART_CHECKPOINT, ensure_checkpoint
from medseg.visualization.demo_model import DEMO_OVERRIDES, demo_checkpoint_dir

REPO_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO_ROOT / "visualization" / "vis_hard_example.ipynb"
TINY_DEMO = ["learning.n_epochs=1", 'data.frame="ES"', "data.pad_size=[48,48,1]", "data.crop_size=[32,32,1]",
             "learning.batch_size=4"]  # fmt: skip


@pytest.fixture
def kernel_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A kernel spec for this very interpreter, so a clean machine needs no ``ipykernel install``."""
    spec_dir = tmp_path / "jupyter" / "kernels" / "medseg-test"
    spec_dir.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec_dir / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "medseg", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    return "medseg-test"


def execute(kernel_name: str, overrides: str) -> nbformat.NotebookNode:
    """Run the committed notebook with ``overrides`` inserted after its parameters cell (as papermill does)."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    index = next(i for i, cell in enumerate(nb.cells) if "parameters" in cell.metadata.get("tags", []))
    nb.cells.insert(index + 1, new_code_cell("import torch\ntorch.set_num_threads(1)\n" + overrides))
    client = NotebookClient(nb, timeout=600, kernel_name=kernel_name,
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}})  # fmt: skip
    client.execute()
    return nb


def pngs(cell: nbformat.NotebookNode) -> int:
    return sum("image/png" in out.get("data", {}) for out in cell.get("outputs", []))


def test_committed_notebook_is_clean_and_defaults_to_the_quickstart_model():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert all(not cell.outputs and cell.execution_count is None for cell in code), "commit the notebook without outputs"
    parameters = next(cell.source for cell in code if "parameters" in cell.metadata.get("tags", []))
    for name in ("CHECKPOINT", "SUBJECT", "SLICE", "METHOD", "THRESHOLD", "TRAIN_DEMO_MODEL"):
        assert f"\n{name} = " in parameters, name
    namespace: dict = {}
    exec(parameters, namespace)  # noqa: S102 (the committed notebook's own cell: plain assignments)
    assert namespace["CHECKPOINT"] == namespace["REPO"] / QUICKSTART_CHECKPOINT
    assert namespace["DEMO_OVERRIDES"] == list(DEMO_OVERRIDES) and namespace["TRAIN_DEMO_MODEL"] is False
    assert namespace["METHOD"] in METHODS and namespace["SLICE"] is None
    # the path scripts/quickstart.sh trains into (the runner trains into saved/quickstart/runs; data setting 10, cval 0)
    config = REPO_ROOT / "config" / "quickstart" / "cooperative_training.json"
    assert demo_checkpoint_dir("saved/quickstart/runs", config, "10") == QUICKSTART_CHECKPOINT


def test_missing_checkpoint_says_how_to_make_one(tmp_path):
    with pytest.raises(FileNotFoundError, match="scripts/quickstart.sh") as info:
        ensure_checkpoint(tmp_path / "nothing")
    assert "TRAIN_DEMO_MODEL = True" in str(info.value) and str(tmp_path / "nothing") in str(info.value)


@pytest.mark.slow
def test_notebook_runs_end_to_end_with_a_demo_model(tmp_path, kernel_name):
    data = write_tiny_acdc(tmp_path / "data" / "ACDC")
    saved = tmp_path / "saved"
    nb = execute(kernel_name, f"""
CHECKPOINT = Path(r"{tmp_path / 'no_checkpoint'}")
TRAIN_DEMO_MODEL = True
DEMO_DATA = Path(r"{data}")
DEMO_SAVE_DIR = Path(r"{saved}")
DEMO_OVERRIDES = {TINY_DEMO!r}
SUBJECT = Path(r"{data / '007'}")
DEVICE = "cpu"
WIDGETS = False
""")
    outputs = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]
    assert not [out for out in outputs if out.output_type == "error"]
    figures = {marker: next(cell for cell in nb.cells if marker in cell.source) for marker in
               ("plot_reconstruction_grid(image_grid", "plot_segmentation_grid(shape_grid", "plot_recon_diff(",
                "show_example()")}  # fmt: skip
    assert {marker: pngs(cell) for marker, cell in figures.items()} == dict.fromkeys(figures, 1)
    text = "".join(out.get("text", "") for out in outputs)
    assert "masked fraction of z_i" in text and "label differs from the unmasked prediction" in text
    checkpoint = demo_checkpoint_dir(saved, REPO_ROOT / "config" / "quickstart" / "cooperative_training.json")
    modules = Model(use_gpu=False).model
    assert sorted(p.name for p in checkpoint.glob("*.pth")) == sorted(f"{m}.pth" for m in modules)


@pytest.mark.slow
def test_notebook_refuses_a_checkpoint_that_does_not_match(tmp_path, kernel_name):
    model = Model(use_gpu=False, device="cpu")
    checkpoint = model.save_model(tmp_path / "model", "best")
    encoder = checkpoint / "image_encoder.pth"
    state = torch.load(encoder, weights_only=True)
    state.pop(next(iter(state)))  # an encoder file of another architecture
    torch.save(state, encoder)
    (checkpoint / "manifest.json").unlink()  # a published-style folder: the architecture check is what refuses it
    with pytest.raises(CellExecutionError) as info:
        execute(kernel_name, f'CHECKPOINT = Path(r"{checkpoint}")\nDEVICE = "cpu"')
    message = str(info.value)
    assert "ValueError" in message and "image_encoder.pth" in message and "does not match" in message
