"""Build a torchvision Mask R-CNN from a run's ``model`` settings.

One builder serves the full R-50-FPN reproduction and the CPU demo: the backbone (a
torchvision ResNet or the small from-scratch ResNet of the demo) goes under a torchvision FPN,
and every RPN / RoI setting of the config reaches torchvision's MaskRCNN, so a checkpoint plus
its saved ``model`` settings rebuilds exactly the trained network.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.models import resnet
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.roi_heads import RoIHeads, maskrcnn_loss
from torchvision.ops import FrozenBatchNorm2d, MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from maskrcnn_pipeline.errors import PipelineError

log = logging.getLogger(__name__)

STAGES = ("layer1", "layer2", "layer3", "layer4")
#: ImageNet statistics in RGB, 0-1 range: what torchvision's ResNet weights were trained on.
IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)


class BasicBlock(nn.Module):
    """A ResNet basic block (two 3x3 convolutions and a shortcut)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class SmallResNet(nn.Module):
    """The demo backbone: a stride-4 two-conv stem and one basic block per stage.

    Small enough to train from scratch on two CPU cores in minutes (the demo); its children
    are named like torchvision's ResNets so that the same FPN wiring serves both.
    """

    def __init__(self, widths: Sequence[int]) -> None:
        super().__init__()
        stem_width = widths[0]
        self.stem = nn.Sequential(
            nn.Conv2d(3, stem_width, 3, 2, 1, bias=False),
            nn.BatchNorm2d(stem_width),
            nn.ReLU(inplace=True),
            nn.Conv2d(stem_width, stem_width, 3, 2, 1, bias=False),
            nn.BatchNorm2d(stem_width),
            nn.ReLU(inplace=True),
        )
        in_channels = stem_width
        for index, (name, width) in enumerate(zip(STAGES, widths, strict=True)):
            setattr(self, name, BasicBlock(in_channels, width, 1 if index == 0 else 2))
            in_channels = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - FPN calls stages
        x = self.stem(x)
        for name in STAGES:
            x = getattr(self, name)(x)
        return x


def _resnet_trunk(settings: Mapping[str, Any]) -> tuple[nn.Module, list[int]]:
    """A torchvision ResNet with the configured norm layer, optionally ImageNet weights."""
    norm_layer = FrozenBatchNorm2d if settings["norm"] == "frozen_bn" else nn.BatchNorm2d
    trunk = getattr(resnet, settings["backbone"])(weights=None, norm_layer=norm_layer)
    if settings["backbone_weights"]:
        _load_backbone_weights(trunk, Path(settings["backbone_weights"]))
    block_expansion = 4 if settings["backbone"] in ("resnet50", "resnet101") else 1
    channels = [64 * block_expansion * 2**i for i in range(4)]
    return trunk, channels


def _load_backbone_weights(trunk: nn.Module, path: Path) -> None:
    if not path.is_file():
        raise PipelineError(
            f"{path}: backbone weights not found; fetch them first (rule fetch_weights) "
            "or set model.backbone_weights to null to train from scratch"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    missing, unexpected = trunk.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        raise PipelineError(
            f"{path}: does not match the configured backbone "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]}); check model.backbone"
        )
    log.info("loaded backbone weights from %s", path)


def _freeze(trunk: nn.Module, trainable_layers: int) -> None:
    """Freeze all but the last ``trainable_layers`` of (stem, layer1..layer4)."""
    trainable = ["layer4", "layer3", "layer2", "layer1", "stem"][:trainable_layers]
    for name, parameter in trunk.named_parameters():
        top = name.split(".")[0]
        is_stem = top not in STAGES
        if not any(top == t or (t == "stem" and is_stem) for t in trainable):
            parameter.requires_grad_(False)


def build_backbone(settings: Mapping[str, Any]) -> BackboneWithFPN:
    """Backbone trunk + FPN over its four stages, plus a max-pool level (P2-P6)."""
    if settings["backbone"] == "small":
        trunk: nn.Module = SmallResNet(settings["small_widths"])
        channels = list(settings["small_widths"])
    else:
        trunk, channels = _resnet_trunk(settings)
    _freeze(trunk, settings["trainable_backbone_layers"])
    return BackboneWithFPN(
        trunk,
        return_layers={name: str(i) for i, name in enumerate(STAGES)},
        in_channels_list=channels,
        out_channels=settings["fpn_channels"],
        extra_blocks=LastLevelMaxPool(),
    )


class BoxOnlyAwareRoIHeads(RoIHeads):
    """torchvision's RoI heads, whose mask loss leaves out proposals matched to box-only
    objects (``target["has_mask"]`` False: data/coco.py), so they train the box head and
    never teach the mask head an empty mask.

    torchvision computes the mask loss inside ``forward`` with no way to weight instances, so
    in training the parent runs with its mask branch off (``has_mask``), its sampled proposals
    are kept from ``select_training_samples``, and the mask branch runs here on the positives
    that match an object with a mask, through torchvision's own ``maskrcnn_loss``. Targets
    without ``has_mask`` (every object has a mask) give torchvision's loss exactly.
    """

    _mask_branch = True
    _samples: tuple[Any, ...] | None = None

    def has_mask(self) -> bool:
        return self._mask_branch and super().has_mask()

    def select_training_samples(
        self, proposals: list[torch.Tensor], targets: list[dict[str, torch.Tensor]] | None
    ) -> tuple[Any, ...]:
        self._samples = super().select_training_samples(proposals, targets)
        return self._samples

    def forward(
        self,
        features: dict[str, torch.Tensor],
        proposals: list[torch.Tensor],
        image_shapes: list[tuple[int, int]],
        targets: list[dict[str, torch.Tensor]] | None = None,
    ) -> tuple[list[dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
        if not self.training or not super().has_mask():
            return super().forward(features, proposals, image_shapes, targets)
        self._mask_branch = False
        try:
            result, losses = super().forward(features, proposals, image_shapes, targets)
        finally:
            self._mask_branch = True
        assert self._samples is not None and targets is not None
        sampled, matched_idxs, labels, _ = self._samples
        self._samples = None
        mask_proposals, matched = [], []
        for boxes, idxs, image_labels, target in zip(
            sampled, matched_idxs, labels, targets, strict=True
        ):
            positive = image_labels > 0
            if "has_mask" in target and len(target["has_mask"]):
                positive &= target["has_mask"][idxs.clamp(min=0)]
            mask_proposals.append(boxes[positive])
            matched.append(idxs[positive])
        mask_features = self.mask_head(self.mask_roi_pool(features, mask_proposals, image_shapes))
        mask_logits = self.mask_predictor(mask_features)
        losses["loss_mask"] = maskrcnn_loss(
            mask_logits,
            mask_proposals,
            [t["masks"] for t in targets],
            [t["labels"] for t in targets],
            matched,
        )
        return result, losses


def build_model(
    model_settings: Mapping[str, Any],
    *,
    num_classes: int,
    input_settings: Mapping[str, Any],
) -> MaskRCNN:
    """Mask R-CNN for ``num_classes`` foreground classes (background is added here).

    The image transform is set up for training sizes; :func:`configure_inference` switches it
    (and the detection thresholds) to the test settings.
    """
    backbone = build_backbone(model_settings)
    fpn_channels = model_settings["fpn_channels"]
    rpn, roi = model_settings["rpn"], model_settings["roi_heads"]
    feature_maps = ["0", "1", "2", "3"]
    anchors = AnchorGenerator(
        sizes=tuple((size,) for size in model_settings["anchor_sizes"]),
        aspect_ratios=(tuple(model_settings["aspect_ratios"]),) * 5,
    )
    box_pool, mask_pool = roi["box_pool_size"], roi["mask_pool_size"]
    mask_width = roi["mask_head_channels"]
    model = MaskRCNN(
        backbone,
        num_classes=None,
        min_size=tuple(input_settings["min_size_train"]),
        max_size=input_settings["max_size_train"],
        image_mean=list(IMAGE_MEAN),
        image_std=list(IMAGE_STD),
        size_divisible=input_settings["size_divisibility"],
        rpn_anchor_generator=anchors,
        rpn_pre_nms_top_n_train=rpn["pre_nms_top_n_train"],
        rpn_post_nms_top_n_train=rpn["post_nms_top_n_train"],
        rpn_pre_nms_top_n_test=rpn["pre_nms_top_n_test"],
        rpn_post_nms_top_n_test=rpn["post_nms_top_n_test"],
        rpn_nms_thresh=rpn["nms_thresh"],
        rpn_batch_size_per_image=rpn["batch_size_per_image"],
        rpn_positive_fraction=rpn["positive_fraction"],
        box_roi_pool=MultiScaleRoIAlign(feature_maps, box_pool, sampling_ratio=2),
        box_head=TwoMLPHead(fpn_channels * box_pool**2, roi["representation_size"]),
        box_predictor=FastRCNNPredictor(roi["representation_size"], num_classes + 1),
        box_batch_size_per_image=roi["batch_size_per_image"],
        box_positive_fraction=roi["positive_fraction"],
        mask_roi_pool=MultiScaleRoIAlign(feature_maps, mask_pool, sampling_ratio=2),
        mask_head=MaskRCNNHeads(fpn_channels, (mask_width,) * roi["mask_head_convs"], 1),
        mask_predictor=MaskRCNNPredictor(mask_width, mask_width, num_classes + 1),
    )
    # the same heads and parameters (state dicts unchanged), with the box-only-aware mask loss
    model.roi_heads.__class__ = BoxOnlyAwareRoIHeads
    return model


#: (module path, attribute, test setting) of everything that differs at test time
_TEST_ATTRIBUTES = (
    ("roi_heads", "score_thresh", "score_thresh"),
    ("roi_heads", "nms_thresh", "nms_thresh"),
    ("roi_heads", "detections_per_img", "detections_per_img"),
    ("transform", "min_size", "min_size"),
    ("transform", "max_size", "max_size"),
)


def configure_inference(model: MaskRCNN, test_settings: Mapping[str, Any]) -> None:
    """Apply the test-time settings; they can change after training without retraining."""
    for module, attribute, key in _TEST_ATTRIBUTES:
        value = test_settings[key]
        setattr(getattr(model, module), attribute, (value,) if key == "min_size" else value)


@contextmanager
def inference_mode(model: MaskRCNN, test_settings: Mapping[str, Any]) -> Iterator[MaskRCNN]:
    """Evaluate a model in the middle of training: test settings and eval mode inside the
    block, the training settings and mode restored after it."""
    saved = [
        (getattr(model, module), attribute, getattr(getattr(model, module), attribute))
        for module, attribute, _ in _TEST_ATTRIBUTES
    ]
    was_training = model.training
    configure_inference(model, test_settings)
    model.eval()
    try:
        yield model
    finally:
        for owner, attribute, value in saved:
            setattr(owner, attribute, value)
        model.train(was_training)
