"""Compact SegFormer3D: a hierarchical transformer encoder and an ASPP + FPN decoder.

Written from the original submission's network specification, layer by layer; module names are
the state-dict keys of the original training code, so its checkpoints load strictly. The forward passes compute the specified function with
efficient kernels: fused attention (``scaled_dot_product_attention``, never the 133,120 x 2,080
attention matrix of stage 1), BatchNorm folded into convolutions at inference, channels-last
maps where CPU kernels prefer them. ``model/reference.py`` computes the same function literally;
the tests hold the two together.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

Shape3 = tuple[int, int, int]


def to_tokens(x: torch.Tensor) -> tuple[torch.Tensor, Shape3]:
    """(B, C, d, h, w) -> (B, d*h*w, C), plus the spatial shape to undo it.

    A channels-last map already is its token sequence in memory, so this is a view for the maps
    :func:`to_map` makes (and a single copy otherwise)."""
    shape = tuple(x.shape[2:])
    return x.permute(0, 2, 3, 4, 1).reshape(x.shape[0], -1, x.shape[1]), shape  # type: ignore[return-value]


def to_map(x: torch.Tensor, shape: Shape3) -> torch.Tensor:
    """(B, d*h*w, C) -> (B, C, d, h, w), the exact reverse of :func:`to_tokens`: a channels-last
    view, which convolutions take without copying."""
    return x.reshape(x.shape[0], *shape, x.shape[2]).permute(0, 4, 1, 2, 3)


def patchify_conv(conv: nn.Conv3d, x: torch.Tensor) -> tuple[torch.Tensor, Shape3]:
    """A kernel == stride, unpadded Conv3d as one matmul over non-overlapping patches.

    Exactly the convolution (trailing voxels that fit no whole patch are dropped, as the conv
    does), but it reads a channels-last map in place and runs as a GEMM instead of a slow
    strided-convolution kernel. Returns tokens (B, n_patches, C_out) and their map shape."""
    r = conv.kernel_size[0]
    b, c, d, h, w = x.shape
    d, h, w = d // r, h // r, w // r
    x = x[:, :, : d * r, : h * r, : w * r]
    patches = x.reshape(b, c, d, r, h, r, w, r).permute(0, 2, 4, 6, 1, 3, 5, 7).reshape(b, d * h * w, -1)
    return F.linear(patches, conv.weight.reshape(conv.out_channels, -1), conv.bias), (d, h, w)


def conv_bn(conv: nn.Conv3d, bn: nn.BatchNorm3d, x: torch.Tensor) -> torch.Tensor:
    """``bn(conv(x))``; in eval mode as one convolution with the BatchNorm folded into it
    (the same affine map, one pass over the output fewer)."""
    if bn.training:
        return bn(conv(x))
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    weight = conv.weight * scale.reshape(-1, 1, 1, 1, 1)
    bias = bn.bias - bn.running_mean * scale
    if conv.bias is not None:
        bias = bias + conv.bias * scale
    return F.conv3d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)


def upsample_to(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    if tuple(x.shape[2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="trilinear", align_corners=False)


# ----------------------------------------------------------------------------- encoder


class PatchEmbedding(nn.Module):
    """Strided convolution then LayerNorm over channels; returns tokens and their map shape."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, padding: int):
        super().__init__()
        self.patch_embeddings = nn.Conv3d(in_ch, out_ch, kernel, stride, padding)
        self.norm = nn.LayerNorm(out_ch)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, Shape3]:
        tokens, shape = to_tokens(self.patch_embeddings(x))
        return self.norm(tokens), shape


class HybridStem(nn.Module):
    """Two 3x3x3 conv-BN-GELU layers (the second strided by 2): stage 1 runs at half resolution."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        mid = out_ch // 2
        self.stem = nn.Sequential(
            nn.Conv3d(in_ch, mid, 3, 1, 1), nn.BatchNorm3d(mid), nn.GELU(),
            nn.Conv3d(mid, out_ch, 3, 2, 1), nn.BatchNorm3d(out_ch), nn.GELU(),
        )
        self.norm = nn.LayerNorm(out_ch)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, Shape3]:
        s = self.stem
        x = s[2](conv_bn(s[0], s[1], x))
        # channels-last: the strided conv runs faster and its output is already the token sequence
        x = s[5](conv_bn(s[3], s[4], x.contiguous(memory_format=torch.channels_last_3d)))
        tokens, shape = to_tokens(x)
        return self.norm(tokens), shape


class Attention(nn.Module):
    """Multi-head self-attention whose keys and values come from a spatially reduced sequence."""

    def __init__(self, dim: int, heads: int, sr_ratio: int):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.sr_ratio = sr_ratio
        if sr_ratio > 1:
            self.sr = nn.Conv3d(dim, dim, sr_ratio, sr_ratio)
            self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, shape: Shape3) -> torch.Tensor:
        b, n, c = x.shape
        h = self.heads
        q = self.q(x).reshape(b, n, h, c // h).transpose(1, 2)
        src = x
        if self.sr_ratio > 1:
            src, _ = patchify_conv(self.sr, to_map(x, shape))
            src = self.norm(src)
        k, v = self.kv(src).reshape(b, -1, 2, h, c // h).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class DWConv(nn.Module):
    """Depthwise 3x3x3 convolution and BatchNorm on the token sequence's map form."""

    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = nn.Conv3d(dim, dim, 3, 1, 1, groups=dim)
        self.bn = nn.BatchNorm3d(dim)

    def forward(self, x: torch.Tensor, shape: Shape3) -> torch.Tensor:
        return to_tokens(conv_bn(self.dwconv, self.bn, to_map(x, shape)))[0]


class MixFFN(nn.Module):
    def __init__(self, dim: int, ratio: int):
        super().__init__()
        hidden = dim * ratio
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = DWConv(hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, shape: Shape3) -> torch.Tensor:
        return self.fc2(self.act(self.dwconv(self.fc1(x), shape)))


class TransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, sr_ratio: int, mlp_ratio: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attention = Attention(dim, heads, sr_ratio)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MixFFN(dim, mlp_ratio)

    def forward(self, x: torch.Tensor, shape: Shape3) -> torch.Tensor:
        x = x + self.attention(self.norm1(x), shape)
        return x + self.mlp(self.norm2(x), shape)


class Encoder(nn.Module):
    """Four stages of embedding, transformer blocks and LayerNorm; returns the maps c1..c4."""

    def __init__(
        self,
        in_channels: int,
        embed_dims: Sequence[int],
        depths: Sequence[int],
        num_heads: Sequence[int],
        sr_ratios: Sequence[int],
        patch_kernel_size: Sequence[int],
        patch_stride: Sequence[int],
        patch_padding: Sequence[int],
        mlp_ratios: Sequence[int],
        use_hybrid_stem: bool,
    ):
        super().__init__()
        self.num_stages = len(embed_dims)
        for i in range(self.num_stages):
            in_ch = in_channels if i == 0 else embed_dims[i - 1]
            if i == 0 and use_hybrid_stem:
                embed: nn.Module = HybridStem(in_ch, embed_dims[0])
            else:
                embed = PatchEmbedding(
                    in_ch, embed_dims[i], patch_kernel_size[i], patch_stride[i], patch_padding[i]
                )
            setattr(self, f"embed_{i + 1}", embed)
        for i in range(self.num_stages):
            blocks = nn.ModuleList(
                TransformerBlock(embed_dims[i], num_heads[i], sr_ratios[i], mlp_ratios[i])
                for _ in range(depths[i])
            )
            setattr(self, f"tf_block{i + 1}", blocks)
        for i in range(self.num_stages):
            setattr(self, f"norm{i + 1}", nn.LayerNorm(embed_dims[i]))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        maps = []
        for i in range(1, self.num_stages + 1):
            x, shape = getattr(self, f"embed_{i}")(x)
            for block in getattr(self, f"tf_block{i}"):
                x = block(x, shape)
            x = to_map(getattr(self, f"norm{i}")(x), shape)
            maps.append(x)  # channels-last, like everything downstream
        return maps


# ----------------------------------------------------------------------------- decoder


def pointwise(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """A 1x1x1 convolution. On a channels-last map it is a matmul over the channel axis, which
    keeps the map channels-last (PyTorch's CPU kernel returns it channels-first, and slower)."""
    if x.is_contiguous() or not x.is_contiguous(memory_format=torch.channels_last_3d):
        return F.conv3d(x, weight, bias)
    return F.linear(x.permute(0, 2, 3, 4, 1), weight.flatten(1), bias).permute(0, 4, 1, 2, 3)


class Conv1x1(nn.Conv3d):
    """``nn.Conv3d(in_ch, out_ch, 1)``, computed by :func:`pointwise`."""

    def __init__(self, in_ch: int, out_ch: int, bias: bool = True):
        super().__init__(in_ch, out_ch, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pointwise(x, self.weight, self.bias)


class InstanceNorm3d(nn.InstanceNorm3d):
    """``nn.InstanceNorm3d`` (no parameters, no statistics) that keeps channels-last maps fast.

    PyTorch's CPU kernel is slow on channels-last input; there the per-channel mean and
    variance are two matrix products over the token view, which give the same result."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu" or not x.is_contiguous(memory_format=torch.channels_last_3d):
            return super().forward(x)
        b, c = x.shape[:2]
        tokens = x.permute(0, 2, 3, 4, 1).reshape(b, -1, c).float()
        weights = torch.full((b, 1, tokens.shape[1]), 1.0 / tokens.shape[1], dtype=tokens.dtype)
        centred = tokens - torch.bmm(weights, tokens)
        variance = torch.bmm(weights, centred * centred)
        out = centred * torch.rsqrt(variance + self.eps)
        return out.to(x.dtype).reshape(b, *x.shape[2:], c).permute(0, 4, 1, 2, 3)


class DWSConv(nn.Module):
    """Depthwise-separable conv: dilated depthwise 3x3x3, pointwise, InstanceNorm, GELU."""

    def __init__(self, ch: int, dilation: int = 1):
        super().__init__()
        self.dw = nn.Conv3d(ch, ch, 3, padding=dilation, dilation=dilation, groups=ch, bias=False)
        self.pw = Conv1x1(ch, ch, bias=False)
        self.norm = InstanceNorm3d(ch)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.pw(self.dw(x))))


def conv1x1_norm_act(in_ch: int, out_ch: int) -> list[nn.Module]:
    return [Conv1x1(in_ch, out_ch, bias=False), InstanceNorm3d(out_ch), nn.GELU()]


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling on the coarsest map: P4."""

    def __init__(self, in_ch: int, out_ch: int, rates: Sequence[int]):
        super().__init__()
        self.branches = nn.ModuleList([nn.Sequential(*conv1x1_norm_act(in_ch, out_ch))])
        for r in rates:
            self.branches.append(nn.Sequential(DWSConv(in_ch, r), *conv1x1_norm_act(in_ch, out_ch)))
        self.pool_proj = nn.Sequential(
            nn.AdaptiveAvgPool3d(1), Conv1x1(in_ch, out_ch, bias=False), nn.GELU()
        )
        self.proj = Conv1x1(out_ch * (len(rates) + 2), out_ch, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = upsample_to(self.pool_proj(x), x.shape[2:])
        return self.proj(torch.cat([b(x) for b in self.branches] + [pooled], dim=1))


class ChannelSE(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        mid = max(ch // 8, 8)
        self.fc1 = Conv1x1(ch, mid)
        self.act = nn.GELU()
        self.fc2 = Conv1x1(mid, ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.fc2(self.act(self.fc1(x.mean(dim=(2, 3, 4), keepdim=True)))))


class SpatialSE(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = Conv1x1(ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.conv(x))


class SCSE(nn.Module):
    """Concurrent channel and spatial squeeze-and-excitation (sum of both recalibrations)."""

    def __init__(self, ch: int):
        super().__init__()
        self.cse = ChannelSE(ch)
        self.sse = SpatialSE(ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cse(x) + self.sse(x)


class AttentionGate(nn.Module):
    """Additive attention gate: the coarser decoder map decides which skip voxels pass."""

    def __init__(self, skip_ch: int, gate_ch: int):
        super().__init__()
        inter = max(gate_ch // 2, 32)
        self.theta_x = Conv1x1(skip_ch, inter, bias=False)
        self.phi_g = Conv1x1(gate_ch, inter, bias=False)
        self.act = nn.GELU()
        self.psi = Conv1x1(inter, 1)

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        g = upsample_to(g, x.shape[2:])
        return x * torch.sigmoid(self.psi(self.act(self.theta_x(x) + self.phi_g(g))))


class Decoder(nn.Module):
    def __init__(
        self,
        embed_dims: Sequence[int],
        num_classes: int,
        decoder_C: int,
        aspp_rates: Sequence[int],
        fuse_all: bool,
    ):
        super().__init__()
        c = decoder_C
        self.aspp = ASPP(embed_dims[3], c, aspp_rates)
        for k in (1, 2, 3):
            setattr(self, f"cam{k}", SCSE(embed_dims[k - 1]))
        for k in (1, 2, 3):
            setattr(self, f"ag{k}", AttentionGate(embed_dims[k - 1], c))
        for k in (1, 2, 3):
            setattr(self, f"lat{k}", Conv1x1(embed_dims[k - 1], c, bias=False))
        for k in (3, 2, 1):
            setattr(self, f"smooth{k}", DWSConv(c))
        self.fuse_all = fuse_all
        if fuse_all:
            self.fuse = nn.Sequential(*conv1x1_norm_act(4 * c, c))
        self.cls = Conv1x1(c, num_classes)
        self.cls_aux = Conv1x1(c, num_classes)

    def pyramid(self, c1: torch.Tensor, c2: torch.Tensor, c3: torch.Tensor, c4: torch.Tensor):
        """P4 from ASPP, then P3, P2, P1 top-down through scSE, attention gates and laterals."""
        p = [self.aspp(c4).contiguous(memory_format=torch.channels_last_3d)]  # keep the maps channels-last
        for k, skip in ((3, c3), (2, c2), (1, c1)):
            coarse = upsample_to(p[-1], skip.shape[2:])  # once, for the gate and the sum
            gated = getattr(self, f"ag{k}")(getattr(self, f"cam{k}")(skip), coarse)
            p.append(getattr(self, f"smooth{k}")(coarse + getattr(self, f"lat{k}")(gated)))
        return p  # [P4, P3, P2, P1]

    def main_head(self, p: list[torch.Tensor]) -> torch.Tensor:
        p1 = p[3]
        if not self.fuse_all:
            return self.cls(p1)
        # fuse[0] is a bias-free 1x1 conv over concat[up(P4), up(P3), up(P2), P1]. Channel mixing
        # and trilinear upsampling are both linear, so each block of its weight is applied at its
        # map's own resolution and the results upsampled: the same function, ~4x fewer FLOPs.
        blocks = self.fuse[0].weight.split(p1.shape[1], dim=1)
        fused = pointwise(p1, blocks[3])
        for q, w in zip(p[:3], blocks[:3]):
            fused += upsample_to(pointwise(q, w), p1.shape[2:])
        return self.cls(self.fuse[2](self.fuse[1](fused)))


class SegFormer3D(nn.Module):
    """The network. ``forward`` returns (logits, aux) at input size; ``predict`` logits only."""

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 3,
        embed_dims: Sequence[int] = (32, 64, 160, 256),
        depths: Sequence[int] = (2, 2, 2, 2),
        num_heads: Sequence[int] = (1, 2, 5, 8),
        sr_ratios: Sequence[int] = (4, 2, 1, 1),
        patch_kernel_size: Sequence[int] = (7, 3, 3, 3),
        patch_stride: Sequence[int] = (4, 2, 2, 2),
        patch_padding: Sequence[int] = (3, 1, 1, 1),
        mlp_ratios: Sequence[int] = (4, 4, 4, 4),
        use_hybrid_stem: bool = True,
        decoder_C: int = 128,
        aspp_rates: Sequence[int] = (1, 2, 3),
        fuse_all: bool = True,
    ):
        super().__init__()
        self.encoder = Encoder(
            in_channels, embed_dims, depths, num_heads, sr_ratios,
            patch_kernel_size, patch_stride, patch_padding, mlp_ratios, use_hybrid_stem,
        )
        self.decoder = Decoder(embed_dims, num_classes, decoder_C, aspp_rates, fuse_all)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.decoder.pyramid(*self.encoder(x))
        size = x.shape[2:]
        logits = upsample_to(self.decoder.main_head(p), size)
        aux = upsample_to(self.decoder.cls_aux(p[2]), size)
        return logits, aux

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Main-head logits only: what inference needs, without the auxiliary head's cost."""
        p = self.decoder.pyramid(*self.encoder(x))
        return upsample_to(self.decoder.main_head(p), x.shape[2:])

