"""The network computed literally as the network specification words it, over the same modules and weights.

No shortcut at all: the explicit attention matrix, BatchNorm after its convolution, strided
convolutions, channels-first maps, every map upsampled before the fusion convolution. It is
the baseline the benchmark compares against ("the straightforward implementation") and the
oracle the tests hold ``SegFormer3D`` to, for any configuration.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .segformer3d import Attention, SegFormer3D, TransformerBlock


def tokens(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(2).transpose(1, 2)


def to_map(x: torch.Tensor, shape) -> torch.Tensor:
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], *shape)


def up(x: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(x, size=tuple(size), mode="trilinear", align_corners=False)


def attention(a: Attention, x: torch.Tensor, shape) -> torch.Tensor:
    b, n, c = x.shape
    h = a.heads
    q = a.q(x).reshape(b, n, h, c // h).permute(0, 2, 1, 3)
    src = a.norm(tokens(a.sr(to_map(x, shape)))) if a.sr_ratio > 1 else x
    kv = a.kv(src).reshape(b, -1, 2, h, c // h).permute(2, 0, 3, 1, 4)
    attn = (q @ kv[0].transpose(-2, -1)) * a.scale
    out = attn.softmax(dim=-1) @ kv[1]
    return a.proj(out.transpose(1, 2).reshape(b, n, c))


def block(t: TransformerBlock, x: torch.Tensor, shape) -> torch.Tensor:
    x = x + attention(t.attention, t.norm1(x), shape)
    m = t.mlp
    hidden = tokens(m.dwconv.bn(m.dwconv.dwconv(to_map(m.fc1(t.norm2(x)), shape))))
    return x + m.fc2(F.gelu(hidden))


def encoder(model: SegFormer3D, x: torch.Tensor) -> list[torch.Tensor]:
    e = model.encoder
    maps = []
    for i in range(1, e.num_stages + 1):
        embed = getattr(e, f"embed_{i}")
        x = embed.stem(x) if hasattr(embed, "stem") else embed.patch_embeddings(x)
        shape = x.shape[2:]
        x = embed.norm(tokens(x))
        for t in getattr(e, f"tf_block{i}"):
            x = block(t, x, shape)
        x = to_map(getattr(e, f"norm{i}")(x), shape)
        maps.append(x)
    return maps


def dws(m, x: torch.Tensor) -> torch.Tensor:
    return F.gelu(m.norm(m.pw(m.dw(x))))


def decoder(model: SegFormer3D, c: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    d = model.decoder
    a = d.aspp
    c4 = c[3]
    branches = [a.branches[0](c4)] + [F.gelu(br[2](br[1](dws(br[0], c4)))) for br in a.branches[1:]]
    pooled = up(a.pool_proj(c4), c4.shape[2:])
    p = [a.proj(torch.cat(branches + [pooled], dim=1))]
    for k in (3, 2, 1):
        x, coarse = c[k - 1], p[-1]
        cam, ag = getattr(d, f"cam{k}"), getattr(d, f"ag{k}")
        se = cam.cse
        channel = x * torch.sigmoid(se.fc2(F.gelu(se.fc1(F.adaptive_avg_pool3d(x, 1)))))
        x = channel + x * torch.sigmoid(cam.sse.conv(x))
        g = up(coarse, x.shape[2:]) if coarse.shape[2:] != x.shape[2:] else coarse
        x = x * torch.sigmoid(ag.psi(F.gelu(ag.theta_x(x) + ag.phi_g(g))))
        p.append(dws(getattr(d, f"smooth{k}"), up(coarse, x.shape[2:]) + getattr(d, f"lat{k}")(x)))
    p1 = p[3]
    if d.fuse_all:
        main = d.cls(d.fuse(torch.cat([up(q, p1.shape[2:]) for q in p[:3]] + [p1], dim=1)))
    else:
        main = d.cls(p1)
    return main, d.cls_aux(p[2])


def reference_forward(model: SegFormer3D, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, aux) at the input's size, exactly as the specification reads."""
    main, aux = decoder(model, encoder(model, x))
    return up(main, x.shape[2:]), up(aux, x.shape[2:])
