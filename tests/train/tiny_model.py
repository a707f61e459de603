"""A model small enough to train in the test suite: a stride-4 patch convolution, GELU,
dropout, a mean over the map and a linear head (built from ``refvit.nn`` only)."""
import numpy as np

from refvit import functional as F
from refvit import nn


class TinyNet(nn.Module):
    def __init__(self, num_classes=6, img_size=16, channels=8, dropout=0.1):
        super().__init__()
        self.stem = nn.Conv2d(3, channels, 4, stride=4)
        self.act = nn.GELU()
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(channels, num_classes)
        self.poison_after = None  # forward calls after which the logits turn into nan
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        features = F.mean(self.drop(self.act(self.stem(x))), (1, 2))
        logits = self.head(features)
        if self.poison_after is not None and self.calls > self.poison_after:
            logits = logits * float("nan")
        return logits


def tiny_net(num_classes=6, img_size=16, **kwargs):
    return TinyNet(num_classes=num_classes, img_size=img_size, **kwargs)


def parameters_of(model):
    return {name: np.array(value, copy=True) for name, value in model.state_dict().items()}
