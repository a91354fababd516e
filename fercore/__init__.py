"""fercore: facial expression recognition, reproduced paper by paper."""
__version__ = "0.1.0"
