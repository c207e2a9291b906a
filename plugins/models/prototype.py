"""Convolutional prototype learning (report 000): a feature extractor, a linear embedding, and
learnable class prototypes matched by squared Euclidean distance.

Every model here returns a dict rather than a logits tensor::

    {"logits": (N, C) = -gamma * min_k d(f(x), m_ck),   # argmax = class of the nearest prototype
     "distances": (N, C, K) squared distances to every prototype,
     "embedding": (N, D) f(x)}

Train them with the ``dce_pl`` loss (plugins/losses/prototype.py); reject unseen classes with
fashioncli/tasks/prototype/openset.py.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from fashioncli.api import Preprocessing, hookimpl

from fashion_plugins.models.timm_models import create_timm, timm_preprocessing


def class_log_probs(distances, gamma=1.0):
    """(N, C, K) squared distances -> (N, C) log p(c|x) of the report's DCE.

    p(c|x) = sum_k exp(-gamma d_ck) / sum_{c',k} exp(-gamma d_c'k), in log space (logsumexp) so that
    large distances do not underflow to log(0). With K=1 this equals log_softmax(logits).
    """
    d = distances.to(torch.promote_types(distances.dtype, torch.float32))  # fp16/bf16 -> fp32
    # p is unchanged by a shift of all of an image's distances; shifting the nearest to 0 keeps
    # float32 precision when every distance is large (detached: the shift has no gradient).
    d = d - d.flatten(1).min(dim=1).values.detach().view(-1, 1, 1)
    per_class = torch.logsumexp(-gamma * d, dim=2)
    return per_class - torch.logsumexp(per_class, dim=1, keepdim=True)


class PrototypeHead(nn.Module):
    """C*K learnable prototypes in embedding space; returns squared distances (N, C, K)."""

    def __init__(self, embedding_dim, num_classes, prototypes_per_class=1):
        super().__init__()
        if num_classes < 1 or prototypes_per_class < 1 or embedding_dim < 1:
            raise ValueError("embedding_dim, num_classes and prototypes_per_class must be >= 1")
        self.num_classes, self.prototypes_per_class = num_classes, prototypes_per_class
        # Random, not equal: identical prototypes get identical gradients and never separate (a
        # class's K prototypes would stay one). Small (norm ~0.1): initial distances differ little
        # between classes, so training starts near the uniform prediction, like timm_models' zero head.
        self.prototypes = nn.Parameter(
            torch.randn(num_classes * prototypes_per_class, embedding_dim) * (0.1 / embedding_dim ** 0.5)
        )

    def forward(self, embedding):
        # Float32 even under autocast: distances are differences of nearby numbers. The explicit
        # difference (not |f|^2 - 2 f.m + |m|^2) is exact and never slightly negative; N x C*K x D stays small.
        diff = embedding.float().unsqueeze(1) - self.prototypes.unsqueeze(0)
        d = diff.pow(2).sum(dim=2)
        return d.view(d.shape[0], self.num_classes, self.prototypes_per_class)


class PrototypeNet(nn.Module):
    """features (N, F) -> linear embedding (N, D) -> prototype distances -> the output dict."""

    def __init__(self, features, num_features, num_classes, embedding_dim, prototypes_per_class, gamma):
        super().__init__()
        self.features = features
        self.embed = nn.Linear(num_features, embedding_dim)
        self.head = PrototypeHead(embedding_dim, num_classes, prototypes_per_class)
        self.gamma = float(gamma)

    def forward(self, x):
        embedding = self.embed(self.features(x))
        distances = self.head(embedding)
        logits = -self.gamma * distances.min(dim=2).values
        return {"logits": logits, "distances": distances, "embedding": embedding}


NORMS = ("none", "batch")
POOLS = ("decoder", "bottleneck", "both")


def _double_conv(cin, cout, norm="none"):
    # The report (and U-Net): two 3x3 convolutions, each followed by ReLU; no BatchNorm is mentioned.
    # padding=1 keeps the size, so skip crops are no-ops at power-of-two sizes (U-Net used unpadded).
    # norm="batch" puts BatchNorm between each convolution and its ReLU (the common modern U-Net): it
    # lets the from-scratch stack train at a usable speed on CPU budgets (recipes/prototype_unet_clothing-small.yaml).
    # The convolution's bias is then redundant (BatchNorm's shift replaces it). In eval mode BatchNorm
    # uses its running statistics, so exports (ONNX, TorchScript) see a fixed affine layer.
    layers = []
    for i, o in ((cin, cout), (cout, cout)):
        layers.append(nn.Conv2d(i, o, 3, padding=1, bias=norm == "none"))
        if norm == "batch":
            layers.append(nn.BatchNorm2d(o))
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def _center_crop(skip, like):
    """Crop ``skip`` to the spatial size of ``like`` around its centre (U-Net's crop-and-copy)."""
    h, w = like.shape[-2:]
    top = (skip.shape[-2] - h) // 2
    left = (skip.shape[-1] - w) // 2
    return skip[..., top:top + h, left:left + w]


class UNetFeatures(nn.Module):
    """U-Net contracting + expansive paths, then global average pooling -> (N, num_features).

    ``levels`` is the number of 2x2 max-pools (and of 2x2 up-convolutions): levels=4 is the original
    U-Net shape, with channels base, 2*base, ..., 16*base at the bottom.

    ``norm``: "none" (the report) or "batch" (BatchNorm after every 3x3 convolution).
    ``pool``: which feature map is globally averaged into the image's features:
      "decoder"    the last decoder layer, full resolution, base_channels wide (the default, as before);
      "bottleneck" the bottom of the contracting path, 2**levels * base_channels wide, with the largest
                   receptive field; the expansive path would be unused, so it is not built (this is
                   then a plain VGG-style encoder);
      "both"       the two concatenated: the bottleneck's global, class-level features and the
                   decoder's local detail. The decoder alone leaves the embedding only base_channels
                   averages of full-resolution maps; at CPU size it learned far more slowly
                   (recipes/prototype_unet_clothing-small.yaml).
    """

    def __init__(self, in_chans=3, levels=4, base_channels=16, norm="none", pool="decoder"):
        super().__init__()
        if levels < 1 or base_channels < 1:
            raise ValueError("levels and base_channels must be >= 1")
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {', '.join(POOLS)}, got {pool!r}")
        chans = [base_channels * 2 ** i for i in range(levels + 1)]
        self.levels, self.norm, self.pool = levels, norm, pool
        self.down = nn.ModuleList([_double_conv(in_chans, chans[0], norm)])
        self.down.extend(_double_conv(chans[i], chans[i + 1], norm) for i in range(levels))
        decode = pool != "bottleneck"
        up_levels = list(reversed(range(levels))) if decode else []
        self.upconv = nn.ModuleList(nn.ConvTranspose2d(chans[i + 1], chans[i], 2, stride=2) for i in up_levels)
        self.up = nn.ModuleList(_double_conv(2 * chans[i], chans[i], norm) for i in up_levels)
        self.num_features = {"decoder": chans[0], "bottleneck": chans[-1], "both": chans[-1] + chans[0]}[pool]
        for m in self.modules():
            # U-Net's initialisation: Gaussian with std sqrt(2 / fan_in) (He et al.), for a deep
            # ReLU stack without normalisation layers. BatchNorm keeps its own (scale 1, shift 0).
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x):
        if not (torch.jit.is_tracing() or torch.compiler.is_compiling()) and min(x.shape[-2:]) < 2 ** self.levels:
            raise ValueError(f"U-Net with levels={self.levels} needs inputs of at least {2 ** self.levels} px, got {tuple(x.shape[-2:])}")
        skips = []
        x = self.down[0](x)
        for block in self.down[1:]:
            skips.append(x)
            x = block(F.max_pool2d(x, 2))  # floor: an odd size loses its last row/column here
        bottom = x.mean(dim=(2, 3))
        if self.pool == "bottleneck":
            return bottom
        for upconv, block, skip in zip(self.upconv, self.up, reversed(skips)):
            x = upconv(x)
            x = block(torch.cat([_center_crop(skip, x), x], dim=1))
        decoded = x.mean(dim=(2, 3))
        return decoded if self.pool == "decoder" else torch.cat([bottom, decoded], dim=1)


def unet_prototype(num_classes, levels=4, base_channels=16, embedding_dim=64, prototypes_per_class=1, gamma=1.0,
                   norm="none", pool="decoder"):
    """U-Net feature extractor + prototype head (report 000); outputs logits, distances, embedding.

    ``norm`` ("none" | "batch") and ``pool`` ("decoder" | "bottleneck" | "both"): see UNetFeatures; the
    defaults are the report as written.
    """
    features = UNetFeatures(3, levels, base_channels, norm=norm, pool=pool)
    return PrototypeNet(features, features.num_features, num_classes, embedding_dim, prototypes_per_class, gamma)


# Trained from scratch, so no ImageNet statistics to match: 0.5/0.5 maps pixels to [-1, 1].
UNET_PREPROCESSING = Preprocessing(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


def timm_prototype(num_classes, backbone, pretrained=False, embedding_dim=64, prototypes_per_class=1, gamma=1.0,
                   drop_rate=0.0):
    """Any timm backbone (pooled features) + prototype head; pretrained as in the `timm` model."""
    # Same weights code as the `timm` model (hub / file / offline package); num_classes=0 gives
    # pooled features, and timm still applies drop_rate to them.
    features, _ = create_timm(backbone, pretrained, num_classes=0, drop_rate=drop_rate)
    return PrototypeNet(features, features.num_features, num_classes, embedding_dim, prototypes_per_class, gamma)


@hookimpl
def register_models(register):
    register("unet_prototype", unet_prototype, tasks=("prototype",), preprocessing=UNET_PREPROCESSING)
    register("timm_prototype", timm_prototype, tasks=("prototype",), preprocessing=timm_preprocessing)
