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


def check_tensor(tensor: Any, what: str) -> torch.Tensor:
    """tensor, when it is a tensor of real numbers, all finite; else GankitError naming `what`."""
    if not isinstance(tensor, torch.Tensor):
        raise GankitError(f"{what} is a {type(tensor).__name__}, not a tensor")
    if tensor.layout != torch.strided or tensor.is_quantized:
        raise GankitError(f"{what} is a {str(tensor.layout).replace('torch.', '')} tensor, not a plain (dense) one")
    if tensor.dtype not in REAL_DTYPES:
        raise GankitError(f"{what} holds {str(tensor.dtype).replace('torch.', '')} values, not real numbers")
    if tensor.is_floating_point() and tensor.numel() and not bool(torch.isfinite(tensor).all()):
        raise GankitError(f"{what} holds NaN or infinite values: the file is damaged, or was saved from a "
                          "diverged model")
    return tensor


def check_tensors(tensors: Mapping[str, Any], where: str) -> Mapping[str, Any]:
    """check_tensor for every entry of a state dict or a safetensors file; the message names where and the key."""
    for key, tensor in tensors.items():
        check_tensor(tensor, f"{where} entry '{key}'")
    return tensors
