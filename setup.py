"""Installs odrecords: the `pipelines` and `transforms` packages and the `odrecords` command.

The same file serves as Beam's `--setup_file`, so Dataflow workers install exactly these
packages and pins.
"""

from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="odrecords",
    version="0.1.0",
    description=(
        "Apache Beam pipelines that turn object-detection datasets into the sharded TFRecords "
        "and label maps the TensorFlow Object Detection API trains from."
    ),
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["pipelines", "transforms", "transforms.*"]),
    install_requires=[
        # Pinned exactly: launcher, workers and the worker container must run one Beam version.
        "apache-beam==2.77.0",
        # Beam's TFRecord sink needs a CRC32C backend; this one is hardware-accelerated.
        "google-crc32c>=1.5",
        # Beam's protobuf runtime does not support protobuf 7 yet.
        "protobuf>=4.25,<7",
        "tensorflow>=2.16,<3",
        "pillow>=10.0",
        # libjpeg-turbo, strict and DCT-scaled: proves most JPEGs decode for TensorFlow at
        # half its cost (transforms/images/verify.py). Pinned to the minor version the differential
        # test (tests/test_verify.py) was run with: a new libjpeg-turbo inside may accept
        # differently, so a bump reruns that test first. 1.9 ships manylinux wheels for 3.10+.
        "simplejpeg>=1.9,<1.10",
        "lxml>=5.0",
        "pyyaml>=6.0",
        # `odrecords completion`: bash and zsh completion written from the argparse parsers
        # themselves (no hand-kept lists); pure Python, no dependencies.
        "shtab>=1.7",
    ],
    extras_require={
        # pycocotools checks COCO output. The remote-storage tests run Beam's S3 and GCS
        # filesystems against local servers: moto for S3, gcp-storage-emulator (pure Python;
        # serves the JSON API's resumable uploads, ranged reads, batch copy and delete) for GCS.
        "test": [
            "pytest>=8",
            "ruff>=0.6",
            "pycocotools>=2.0.7",
            "apache-beam[aws,gcp]==2.77.0",
            "moto[server]>=5",
            "gcp-storage-emulator>=2026.7",
            # Property-based fuzzing of the readers and the record decoder.
            "hypothesis>=6",
            # Docker's own client reads .dockerignore in tests/test_docker.py (no engine needed).
            "docker>=7",
        ],
        # Remote storage and runners: gs:// and Dataflow, s3://.
        "gcp": ["apache-beam[gcp]==2.77.0"],
        "aws": ["apache-beam[aws]==2.77.0"],
    },
    entry_points={"console_scripts": ["odrecords=pipelines.cli:main"]},
)
