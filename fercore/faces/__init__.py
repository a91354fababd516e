"""Faces pipeline: read an image, detect faces, find 68 landmarks, align to FER2013's framing.

``faces_in(read_image(path))`` is the whole pipeline for one photo (see DESIGN.md, Faces pipeline).
"""
from .align import EYE_DISTANCE, EYE_Y, alignment_matrix, align_face, crop_box, faces_in
from .detect import Box, detect_faces
from .io import read_image
from .landmarks import predict_landmarks

__all__ = ["Box", "EYE_DISTANCE", "EYE_Y", "align_face", "alignment_matrix", "crop_box", "detect_faces",
           "faces_in", "predict_landmarks", "read_image"]
