"""The one check of weights read from a file (a checkpoint, an exported generator, a detector, an evaluator),
made before they are loaded into anything: every value a tensor of real numbers (no complex, quantized or
exotic dtype, which torch would take with a warning or a crash later) and every floating value finite (NaN
weights would be blamed on training: every resume would "diverge" again).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from gankit.errors import GankitError

# What gankit writes: floats of these widths, and whole numbers (BatchNorm's counts, image hashes, labels).
REAL_DTYPES = {torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.uint8, torch.int8, torch.int16,
               torch.int32, torch.int64, torch.bool}


def check_tensor(tensor: Any, what: str, like: torch.Tensor | None = None) -> torch.Tensor:
    """tensor, when it is a tensor of real numbers, all finite, and (given `like`, what the model holds there) of
    the same kind, floating or whole (load_state_dict would cast int64 or bool weights without a word); else
    GankitError naming `what`."""
    if not isinstance(tensor, torch.Tensor):
        raise GankitError(f"{what} is a {type(tensor).__name__}, not a tensor")
    if tensor.layout != torch.strided or tensor.is_quantized:
        raise GankitError(f"{what} is a {str(tensor.layout).replace('torch.', '')} tensor, not a plain (dense) one")
    if tensor.dtype not in REAL_DTYPES:
        raise GankitError(f"{what} holds {str(tensor.dtype).replace('torch.', '')} values, not real numbers")
    if like is not None and tensor.is_floating_point() != like.is_floating_point():
        raise GankitError(f"{what} holds {str(tensor.dtype).replace('torch.', '')} values where the model holds "
                          f"{str(like.dtype).replace('torch.', '')}: not weights gankit wrote")
    if tensor.is_floating_point() and tensor.numel() and not bool(torch.isfinite(tensor).all()):
        raise GankitError(f"{what} holds NaN or infinite values: the file is damaged, or was saved from a "
                          "diverged model")
    return tensor


def check_tensors(tensors: Mapping[str, Any], where: str,
                  like: Mapping[str, torch.Tensor] | None = None) -> Mapping[str, Any]:
    """check_tensor for every entry of a state dict or a safetensors file (like: the model's state dict, whose
    entries each must match in kind); the message names where and the key."""
    for key, tensor in tensors.items():
        check_tensor(tensor, f"{where} entry '{key}'", (like or {}).get(key))
    return tensors
