"""Parameter shapes that hold for ZeRO-3 shards too."""

from __future__ import annotations

import torch
from torch import Tensor


def param_shape(param: Tensor) -> torch.Size:
    """A parameter's full shape, also when it is a partitioned shard (ZeRO-3 keeps it in ``ds_shape``)."""
    return getattr(param, "ds_shape", param.shape)
