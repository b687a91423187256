"""VGG's layers by name (conv1_1, relu1_1, ..., pool5) as plain data: no torch, so that the job's
parameters and the command line can name and check layers without loading it."""

from __future__ import annotations

# Convolutions per block: torchvision's configurations "D" (VGG16) and "E" (VGG19).
BLOCK_DEPTHS = {"vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4)}
BLOCK_WIDTHS = (64, 128, 256, 512, 512)


def layer_names(arch: str = "vgg16") -> list[str]:
    """Module names in torchvision's `features` order: conv1_1, relu1_1, ..., pool5."""
    names = []
    for block, depth in enumerate(BLOCK_DEPTHS[arch], start=1):
        for conv in range(1, depth + 1):
            names += [f"conv{block}_{conv}", f"relu{block}_{conv}"]
        names.append(f"pool{block}")
    return names


def relu_names(arch: str = "vgg16") -> list[str]:
    """The layers a loss can use, shallow to deep (13 for VGG16)."""
    return [name for name in layer_names(arch) if name.startswith("relu")]
