"""The published script paths run as files from a checkout where medseg is not importable (no install)."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = [
    "medseg/train_adv_supervised_segmentation_triplet.py",
    "medseg/test_ACDC_triplet_segmentation.py",
    "medseg/dataset_loader/acdc_preprocess.py",
    "medseg/dataset_loader/mnms_preprocess.py",
    "medseg/dataset_loader/generate_artefacted_data.py",
]

# Runs the script as `python <script>` would, after removing every way the interpreter could import an installed
# medseg (an editable install's meta-path finder, a .pth entry pointing at a checkout), so only the script's own
# bootstrap can make the package importable.
HIDE_AND_RUN = """
import runpy, sys
from pathlib import Path
script = sys.argv[1]
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
sys.path[:] = [str(Path(script).parent)] + [p for p in sys.path[1:] if not (Path(p or ".") / "medseg").is_dir()]
try:
    import medseg  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("medseg is still importable: the test cannot hide the installed package")
sys.argv = [script, "--help"]
runpy.run_path(script, run_name="__main__")
"""


@pytest.mark.parametrize("script", SCRIPTS)
def test_published_script_path_runs_without_an_install(script: str, tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-c", HIDE_AND_RUN, str(REPO / script)], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage:" in result.stdout
