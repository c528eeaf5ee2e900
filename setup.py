from setuptools import find_packages, setup

setup(
    name="hyv_jax",
    version="0.1.0",
    description="HunyuanVideo and HunyuanCustom in JAX/Flax NNX",
    python_requires=">=3.10",
    packages=find_packages(include=["hyv_jax", "hyv_jax.*", "configs"]),
    package_data={"hyv_jax": ["assets/*/*/tokenizer.json", "assets/tiny_default/**/*"]},
    install_requires=[
        "jax>=0.10",
        "flax>=0.12.8",
        "optax",
        "orbax-checkpoint>=0.12",
        "grain",
        "av",
        "einops",
        "tensorflow-datasets",
        "numpy",
        "librosa",
        "ml-collections",
        # 0.7.0 spends 1.0-1.1 s initialising its extension at import (0.6.0: 0.1 s), in every
        # process that imports jax: a third of the tiny default's start (measured 2026-12-02)
        "ml-dtypes>=0.5,<0.7",
        "tqdm",
        "tokenizers",
        "pillow",
        # HunyuanCustom's reference images and masks go through OpenCV upstream (INTER_LINEAR
        # resize, imread's EXIF orientation, dilate/erode): the same pixels need OpenCV itself
        "opencv-python-headless>=4.10,<5",
        "array-record",
    ],
    extras_require={
        # the accelerator builds of jax (the default install runs on the CPU)
        "cuda": ["jax[cuda13]"],
        "cuda12": ["jax[cuda12]"],  # NVIDIA drivers older than 580
        "tpu": ["jax[tpu]"],
        "ui": ["gradio>=6"],  # app.py, the page
        "test": [
            "torch==2.13.0",
            "diffusers==0.42.1",
            "transformers",
            "safetensors",
            "pytest",
            "pytest-xdist",
            "peft",
            "soundfile",  # writes the test speech file (librosa reads through it too)
            "gradio>=6",  # app.py's page, driven in Debian's chromium (.ci/run installs it)
        ],
    },
)
