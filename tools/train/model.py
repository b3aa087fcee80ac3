"""hashwall embedding network: MobileNetV3-Small features + global average pool + Linear.

The forward pass returns the RAW projection (no L2 normalisation); training
normalises outside the module and so does the C++ runtime.
"""
import torch
import torchvision

EMBED_DIM = 128


class EmbedNet(torch.nn.Module):
    def __init__(self, dim=EMBED_DIM):
        super().__init__()
        self.features = torchvision.models.mobilenet_v3_small(weights=None).features
        self.pool = torch.nn.AdaptiveAvgPool2d(1)
        self.proj = torch.nn.Linear(576, dim)

    def forward(self, x):
        return self.proj(torch.flatten(self.pool(self.features(x)), 1))
