"""CTransPath (Wang et al. 2022, "Transformer-based unsupervised contrastive learning for histopathological
image classification", Medical Image Analysis; github.com/Xiyue-Wang/TransPath) as the timm architecture
``ctranspath``: ``model.backbone: "timm:ctranspath"``.

CTransPath is timm's Swin-T (Liu et al. 2021, ``swin_tiny_patch4_window7_224``: patch size 4, window 7, embed
dim 96, depths 2-2-6-2, heads 3-6-12-24) whose patch embedding is replaced by a convolutional stem
(``ConvStem``), trained with semantically-relevant contrastive learning on histopathology patches; the
classifier is removed (its features are the 768-d pooled output of the last stage). Its released file,
``ctranspath.pth``, is ``{"model": state_dict}`` in the key layout of timm 0.5.4, which the authors used;
``study.ssl.init.timm_state`` converts that layout to timm 1.0's (docs/weights.md).

Importing this module registers the architecture with timm (``register_model``, with a ``pretrained_cfg``
that is metadata only: nothing is downloaded); ``study.models.timm_encoders._timm`` imports it with timm, so
the name exists wherever a ``timm:`` backbone is used, and timm is not imported otherwise.
"""

from __future__ import annotations

from typing import Any

import torch
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.swin_transformer import SwinTransformer
from torch import nn

#: the stem's fixed stride: two stride-2 convolutions
PATCH_SIZE = 4
#: Swin-T's stage widths double from this; the pooled features are 8 times it (768)
EMBED_DIM = 96


def _pair(x: int | tuple[int, int]) -> tuple[int, int]:
    return (x, x) if isinstance(x, int) else (int(x[0]), int(x[1]))


class ConvStem(nn.Module):
    """CTransPath's patch embedding (Wang et al. 2022), in place of Swin's 4x4 stride-4 convolution: two
    blocks of [3x3 convolution, stride 2, padding 1, no bias; BatchNorm; ReLU] with ``embed_dim // 8`` then
    ``embed_dim // 4`` channels (12 and 24 for Swin-T), a 1x1 convolution (with bias) to ``embed_dim``, all one
    ``nn.Sequential`` named ``proj`` (keys ``proj.0`` conv, ``proj.1`` BN, ``proj.3`` conv, ``proj.4`` BN,
    ``proj.6`` conv), then a LayerNorm over channels (``norm``).

    It takes the arguments timm 1.0's ``SwinTransformer`` gives its ``embed_layer`` and returns what it expects:
    (B, C, H, W) images to (B, H / 4, W / 4, embed_dim) channels-last patch embeddings (``output_fmt="NHWC"``,
    the only format supported). With ``strict_img_size`` the input must be ``img_size``; otherwise any side
    divisible by 4. ``set_input_size`` takes a new ``img_size`` (a multiple of 4); the patch size is fixed."""

    def __init__(
        self,
        img_size: int | tuple[int, int] = 224,
        patch_size: int | tuple[int, int] = PATCH_SIZE,
        in_chans: int = 3,
        embed_dim: int = EMBED_DIM,
        norm_layer: type[nn.Module] | None = nn.LayerNorm,
        strict_img_size: bool = True,
        output_fmt: str = "NHWC",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if _pair(patch_size) != (PATCH_SIZE, PATCH_SIZE):
            raise ValueError(f"CTransPath's convolutional stem has patch size {PATCH_SIZE}, not {patch_size}")
        if embed_dim % 8:
            raise ValueError(f"CTransPath's convolutional stem needs embed_dim divisible by 8, not {embed_dim}")
        if output_fmt != "NHWC":
            raise ValueError(f"CTransPath's convolutional stem returns NHWC (Swin's layout), not {output_fmt}")
        dd: dict[str, Any] = {"device": device, "dtype": dtype}
        self.patch_size = (PATCH_SIZE, PATCH_SIZE)
        self.output_fmt = output_fmt
        self.strict_img_size = strict_img_size
        self.set_input_size(img_size=img_size)
        c1, c2 = embed_dim // 8, embed_dim // 4
        self.proj = nn.Sequential(
            nn.Conv2d(in_chans, c1, 3, stride=2, padding=1, bias=False, **dd),
            nn.BatchNorm2d(c1, **dd),
            nn.ReLU(inplace=True),
            nn.Conv2d(c1, c2, 3, stride=2, padding=1, bias=False, **dd),
            nn.BatchNorm2d(c2, **dd),
            nn.ReLU(inplace=True),
            nn.Conv2d(c2, embed_dim, 1, **dd),
        )
        self.norm = norm_layer(embed_dim, **dd) if norm_layer else nn.Identity()

    def set_input_size(
        self, img_size: int | tuple[int, int] | None = None, patch_size: int | tuple[int, int] | None = None
    ) -> None:
        """Take ``img_size`` inputs (each side a multiple of 4, so the grid is exactly a quarter of it, as
        Swin's attention masks are built for); another patch size is refused."""
        if patch_size is not None and _pair(patch_size) != self.patch_size:
            raise ValueError(f"CTransPath's convolutional stem has a fixed patch size of {PATCH_SIZE}")
        if img_size is None:
            return
        size = _pair(img_size)
        if any(s % PATCH_SIZE for s in size):
            raise ValueError(f"CTransPath takes inputs whose sides are multiples of {PATCH_SIZE}, not {size}")
        self.img_size = size
        self.grid_size = (size[0] // PATCH_SIZE, size[1] // PATCH_SIZE)
        self.num_patches = self.grid_size[0] * self.grid_size[1]

    def feat_ratio(self, as_scalar: bool = True) -> int | tuple[int, int]:
        return PATCH_SIZE if as_scalar else self.patch_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if self.strict_img_size and (h, w) != self.img_size:
            raise ValueError(f"CTransPath built for {self.img_size} inputs got {(h, w)}")
        if h % PATCH_SIZE or w % PATCH_SIZE:
            raise ValueError(f"CTransPath takes inputs whose sides are multiples of {PATCH_SIZE}, not {(h, w)}")
        x = self.proj(x)  # B x embed_dim x H/4 x W/4
        out: torch.Tensor = self.norm(x.permute(0, 2, 3, 1))  # B x H/4 x W/4 x embed_dim
        return out


default_cfgs = generate_default_cfgs(
    {
        "ctranspath": {
            "num_classes": 0,
            "input_size": (3, 224, 224),
            "pool_size": (7, 7),
            "fixed_input_size": True,
            "interpolation": "bilinear",
            "crop_pct": 1.0,
            # the authors' feature extraction (TransPath's get_features_CTransPath.py) normalises with ImageNet's
            "mean": (0.485, 0.456, 0.406),
            "std": (0.229, 0.224, 0.225),
            "first_conv": "patch_embed.proj.0",
            "classifier": "head.fc",
            "origin_url": "https://github.com/Xiyue-Wang/TransPath",
            "paper_name": "Transformer-based unsupervised contrastive learning for histopathological image "
            "classification",
            "notes": ("weights from a local file only (study.ssl.init, format: timm); none is downloaded",),
        }
    }
)


@register_model
def ctranspath(pretrained: bool = False, **kwargs: Any) -> SwinTransformer:
    """CTransPath: Swin-T at 224 px with ``ConvStem`` as its patch embedding (Wang et al. 2022)."""
    if pretrained:
        raise ValueError(
            "timm:ctranspath has no downloadable weights: load the authors' ctranspath.pth with an SSL entry "
            "{method: pretrained, init: {weights: PATH, format: timm}} (docs/weights.md)"
        )
    model_args: dict[str, Any] = dict(
        patch_size=PATCH_SIZE,
        window_size=7,
        embed_dim=EMBED_DIM,
        depths=(2, 2, 6, 2),
        num_heads=(3, 6, 12, 24),
        embed_layer=ConvStem,
    )
    model: SwinTransformer = build_model_with_cfg(
        SwinTransformer,
        "ctranspath",
        pretrained=False,
        feature_cfg=dict(flatten_sequential=True, out_indices=(0, 1, 2, 3)),
        **dict(model_args, **kwargs),
    )
    return model
