"""mmlab: an interactive lab for multimodal (image + text) fusion.

    >>> import mmlab
    >>> model = mmlab.load("checkpoints/shapes-mask-cross_attention")
    >>> pred = model.predict("scene.png", "the small red triangle left of the blue circle")
"""
from mmlab.errors import InputError

__version__ = "0.1.0"
__all__ = ["InputError", "load", "__version__"]


def load(path):
    """Load a checkpoint folder (safetensors + JSON) into a ready ``Model``."""
    from mmlab.checkpoint import load as _load

    return _load(path)
