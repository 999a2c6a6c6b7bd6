"""MotionRAG image-to-video: motion projector, CAMA context transformer, motion adapter, checkpoints.

Importing this package is cheap. `configs`, `layouts`, `errors` and `checkpoints` are plain Python
(checkpoints imports torch/safetensors only inside its functions); `resampler`, `cama`, `adapter`
and `features` import torch (and the adapter works on diffusers models) when imported.
"""
