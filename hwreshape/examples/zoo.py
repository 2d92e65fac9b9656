"""Reference CNN architectures built locally (no weights, no torchvision: there is no CPU build of it here),
for checking the hardware-cost report against published figures (NTU report, Table I, and published parameter counts).

* :func:`alexnet` — the original two-GPU AlexNet (Krizhevsky et al. 2012, grouped conv2/4/5, 60,965,224
  parameters = Table I's 60.96 M) or, with ``grouped=False``, the single-tower variant (61,100,840).
* :func:`vgg` (16 / 19 layers), :func:`resnet` (50 / 152, torchvision "v1.5": stride on the 3×3 conv,
  4.09 G MACs at 224²).
* The Keras reference models (Inception-v3, Xception and the Keras ResNet/VGG variants that Table I's
  parameter column was computed with) come from ``keras.applications`` with ``weights=None``.
"""

from __future__ import annotations

from hwreshape.extras import needs_torch  # noqa: F401  # isort: skip
from torch import nn


def alexnet(num_classes: int = 1000, grouped: bool = True) -> nn.Module:
    g = 2 if grouped else 1
    c = (96, 256, 384, 384, 256) if grouped else (64, 192, 384, 256, 256)
    return nn.Sequential(
        nn.Conv2d(3, c[0], 11, stride=4, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2),
        nn.Conv2d(c[0], c[1], 5, padding=2, groups=g),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2),
        nn.Conv2d(c[1], c[2], 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(c[2], c[3], 3, padding=1, groups=g),
        nn.ReLU(inplace=True),
        nn.Conv2d(c[3], c[4], 3, padding=1, groups=g),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2),
        nn.AdaptiveAvgPool2d((6, 6)),
        nn.Flatten(),
        nn.Dropout(),
        nn.Linear(c[4] * 36, 4096),
        nn.ReLU(inplace=True),
        nn.Dropout(),
        nn.Linear(4096, 4096),
        nn.ReLU(inplace=True),
        nn.Linear(4096, num_classes),
    )


_VGG = {16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}


def vgg(depth: int = 16, num_classes: int = 1000) -> nn.Module:
    if depth not in _VGG:
        raise ValueError(f"vgg depth must be one of {sorted(_VGG)}, got {depth}")
    layers, cin = [], 3
    for n, cout in zip(_VGG[depth], (64, 128, 256, 512, 512)):
        for _ in range(n):
            layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True)]
            cin = cout
        layers.append(nn.MaxPool2d(2, 2))
    layers += [
        nn.AdaptiveAvgPool2d((7, 7)),
        nn.Flatten(),
        nn.Linear(512 * 49, 4096),
        nn.ReLU(inplace=True),
        nn.Dropout(),
        nn.Linear(4096, 4096),
        nn.ReLU(inplace=True),
        nn.Dropout(),
        nn.Linear(4096, num_classes),
    ]
    return nn.Sequential(*layers)


class Bottleneck(nn.Module):
    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        cout = width * 4
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + idt)


_RESNET = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


class ResNet(nn.Module):
    def __init__(self, depth: int = 50, num_classes: int = 1000):
        super().__init__()
        if depth not in _RESNET:
            raise ValueError(f"resnet depth must be one of {sorted(_RESNET)}, got {depth}")
        self.stem = nn.Sequential(
            nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.MaxPool2d(3, 2, padding=1),
        )
        blocks, cin = [], 64
        for i, (n, width) in enumerate(zip(_RESNET[depth], (64, 128, 256, 512))):
            for j in range(n):
                blocks.append(Bottleneck(cin, width, 2 if (j == 0 and i > 0) else 1))
                cin = width * 4
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes))

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)))


def resnet(depth: int = 50, num_classes: int = 1000) -> nn.Module:
    return ResNet(depth, num_classes)


#: NTU report, Table I: (top-1 accuracy %, parameters in millions, GFLOPs) per model.
TABLE_I = {
    "AlexNet": (52.09, 60.96, None),
    "VGG16": (64.27, 138.36, 31.06),
    "VGG19": (64.73, 143.67, 39.40),
    "ResNet50": (67.99, 25.64, 7.80),
    "ResNet152": (70.63, 60.50, 22.83),
    "InceptionV3": (76.27, 23.85, 11.51),
    "Xception": (77.52, 22.91, 16.87),
}


def keras_application(name: str):
    """A ``keras.applications`` model with random weights (``weights=None``) for the Table I names."""
    import keras

    apps = {
        "VGG16": keras.applications.VGG16,
        "VGG19": keras.applications.VGG19,
        "ResNet50": keras.applications.ResNet50,
        "ResNet152": keras.applications.ResNet152,
        "InceptionV3": keras.applications.InceptionV3,
        "Xception": keras.applications.Xception,
    }
    if name not in apps:
        raise ValueError(f"no keras.applications model for {name!r}; choose one of {sorted(apps)}")
    return apps[name](weights=None)
