"""Random crop (zero padding) and horizontal flip on a batch already on the device: no host round trip."""

from __future__ import annotations

import torch


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    if padding == 0:
        return x
    n, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (padding, padding, padding, padding))
    offsets = torch.randint(0, 2 * padding + 1, (2, n), generator=generator, device=x.device)
    rows = (offsets[0, :, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (offsets[1, :, None] + torch.arange(w, device=x.device))[:, None, None, :]
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    channel = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, channel, rows, cols]


def random_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    flip = torch.rand(x.shape[0], generator=generator, device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def augment(x: torch.Tensor, *, crop_padding: int, horizontal_flip: bool, generator: torch.Generator) -> torch.Tensor:
    x = random_crop(x, crop_padding, generator)
    return random_flip(x, generator) if horizontal_flip else x
