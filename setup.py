from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def read_requirements(name: str) -> list[str]:
    lines = (HERE / name).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith(("#", "-r"))]


setup(
    name="medseg",
    version="0.1.0",
    description=(
        "Cooperative training and latent space data augmentation for robust medical image segmentation "
        "(Chen et al., MICCAI 2021): a faithful PyTorch reimplementation"
    ),
    long_description=(HERE / "README.md").read_text() if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["medseg", "medseg.*"]),
    install_requires=read_requirements("requirements.txt"),
    extras_require={
        "dev": read_requirements("requirements-dev.txt"),
        # visualization/vis_hard_example.ipynb: pip install -e ".[notebook]" (ipywidgets adds sliders if installed)
        "notebook": ["jupyterlab>=4.0", "ipykernel>=6.20", "nbclient>=0.7", "nbformat>=5.7"],
    },
    entry_points={
        "console_scripts": [
            "medseg-train=medseg.cli.train:main",
            "medseg-test=medseg.cli.test:main",
            "medseg-predict=medseg.cli.predict:main",
        ]
    },
)
