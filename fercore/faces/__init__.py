"""Faces pipeline: read an image, detect faces, find 68 landmarks, align to FER2013's framing.

``faces_in(read_image(path))`` is the whole pipeline for one photo (see DESIGN.md, Faces pipeline);
``dataset_landmarks(dataset)`` gives a whole dataset's landmarks, cached per dataset;
``cut_blocks`` (regions.py) cuts Prior Attention's landmark blocks, for datasets through ``model_regions``
and for aligned faces from photos through ``face_regions``.
"""
from .align import EYE_DISTANCE, EYE_Y, alignment_matrix, align_face, crop_box, faces_in
from .detect import Box, detect_faces
from .io import read_image
from .landmarks import dataset_landmarks, landmarks_cache_path, predict_landmarks
from .regions import aligned_points, cut_blocks, dataset_blocks, face_regions, model_regions, plausible

__all__ = ["Box", "EYE_DISTANCE", "EYE_Y", "align_face", "aligned_points", "alignment_matrix", "crop_box",
           "cut_blocks", "dataset_blocks", "dataset_landmarks", "detect_faces", "face_regions", "faces_in",
           "landmarks_cache_path", "model_regions", "plausible", "predict_landmarks", "read_image"]
