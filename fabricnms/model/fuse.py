"""Inference copies of a detector: batch norm and the input normalisation folded into the
convolutions, and the mask branch dropped unless masks are wanted.

:func:`inference_copy` leaves the trained model untouched (training keeps its BatchNorm layers
and the explicit ``(x - INPUT_MEAN) / INPUT_STD``). The copy maps the same ``[B, 3, H, W]`` RGB
in [0, 1] to the same :class:`~fabricnms.model.types.DenseOutput`, up to float rounding:

- every ``Conv2d`` directly followed by a ``BatchNorm2d`` inside an ``nn.Sequential`` becomes
  one ``Conv2d`` with a bias (eval-mode statistics), the BatchNorm an ``Identity``;
- the normalisation is folded into the stem convolution exactly, borders included: the stem
  zero-pads the *normalised* image, i.e. pads the raw image with ``INPUT_MEAN``, so the folded
  stem pads with ``INPUT_MEAN`` itself (:class:`MeanPadConv`) and convolves with
  ``W / INPUT_STD`` and bias ``b - INPUT_MEAN / INPUT_STD * sum(W)``.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from fabricnms.model.detector import INPUT_MEAN, INPUT_STD, Detector, InputNorm


class MeanPadConv(nn.Module):
    """A ``Conv2d`` applied to the raw image after padding it with ``value`` (not zero).

    Input ``[B, C, H, W]``; output as the wrapped convolution with its own zero padding.
    """

    def __init__(self, conv: nn.Conv2d, value: float) -> None:
        super().__init__()
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError("MeanPadConv needs a zero-padded convolution with explicit padding")
        ph, pw = conv.padding  # type: ignore[misc]
        self.pad = (pw, pw, ph, ph)
        self.value = value
        self.conv = nn.Conv2d(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,  # type: ignore[arg-type]
            conv.stride,  # type: ignore[arg-type]
            0,
            conv.dilation,  # type: ignore[arg-type]
            conv.groups,
            bias=True,
        )
        with torch.no_grad():
            self.conv.weight.copy_(conv.weight)
            bias = conv.bias if conv.bias is not None else torch.zeros(conv.out_channels)
            self.conv.bias.copy_(bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(nn.functional.pad(x, self.pad, value=self.value))


def fold_batchnorm(module: nn.Module) -> int:
    """Fold every ``Conv2d -> BatchNorm2d`` pair of the ``nn.Sequential`` containers under
    ``module`` (in place, eval statistics); returns the number of pairs folded."""
    folded = 0
    for seq in module.modules():
        if not isinstance(seq, nn.Sequential):
            continue
        for i in range(len(seq) - 1):
            conv, bn = seq[i], seq[i + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                seq[i] = fuse_conv_bn_eval(conv, bn)
                seq[i + 1] = nn.Identity()
                folded += 1
    return folded


def fold_input_norm(model: Detector) -> None:
    """Move ``model.normalise`` into the stem's first convolution (in place, exact)."""
    if not isinstance(model.normalise, InputNorm):
        raise ValueError("the input normalisation is already folded")
    stem = model.backbone.stem
    conv = stem[0]
    if not isinstance(conv, nn.Conv2d):
        raise ValueError(f"the stem starts with {type(conv).__name__}, not a Conv2d")
    weight = conv.weight.detach() / INPUT_STD
    bias = conv.bias.detach() if conv.bias is not None else torch.zeros(conv.out_channels)
    bias = bias - INPUT_MEAN * weight.sum(dim=(1, 2, 3))
    folded = MeanPadConv(conv, INPUT_MEAN)
    with torch.no_grad():
        folded.conv.weight.copy_(weight)
        folded.conv.bias.copy_(bias)
    stem[0] = folded.to(conv.weight.device)
    model.normalise = nn.Identity()  # type: ignore[assignment]


def inference_copy(model: Detector, masks: bool = False) -> Detector:
    """An eval-mode copy of ``model`` for inference only: batch norm folded
    (:func:`fold_batchnorm`), the input normalisation folded into the stem
    (:func:`fold_input_norm`), and without the mask branch unless ``masks`` (its output is
    only read when masks are refined). The copy takes no gradients; ``model`` is unchanged."""
    out = copy.deepcopy(model).eval()
    if not masks:
        out.mask_branch = None
    fold_batchnorm(out)
    fold_input_norm(out)
    out.requires_grad_(False)
    return out
