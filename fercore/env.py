"""What this machine has: versions, the device training will use, and the optional pieces."""
from __future__ import annotations

import importlib.util
import platform
from pathlib import Path


def landmark_model_path() -> Path | None:
    """dlib's 68-point model as shipped by ``face-recognition-models`` (found without importing it:
    its ``__init__`` needs ``pkg_resources``, which setuptools >= 81 no longer has)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / "shape_predictor_68_face_landmarks.dat"
    return path if path.exists() else None


def check_environment() -> dict:
    """Versions and capabilities, as a dict a notebook can print or a script can log."""
    import cv2
    import torch
    import torchvision

    from . import __version__
    from .train import resolve_device

    report = {
        "fercore": __version__, "python": platform.python_version(), "torch": torch.__version__,
        "torchvision": torchvision.__version__, "opencv": cv2.__version__,
        "cuda_available": torch.cuda.is_available(), "device": str(resolve_device("auto")),
        "cpu_threads": torch.get_num_threads(),
    }
    try:
        import dlib
        report["dlib"] = dlib.__version__
    except ImportError:
        report["dlib"] = None
    model = landmark_model_path()
    report["landmark_model"] = str(model) if model else None
    return report
