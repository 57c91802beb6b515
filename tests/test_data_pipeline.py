"""Training data: the resumable distributed sampler, flips, and the GPU-decode path."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

from maskrcnn_pipeline.data.coco import CocoInstances, collate
from maskrcnn_pipeline.data.sampler import GroupedBatchSampler
from maskrcnn_pipeline.data.synthetic import generate_synthetic_dataset
from maskrcnn_pipeline.data.transforms import RandomFlips
from maskrcnn_pipeline.errors import PipelineError
from maskrcnn_pipeline.train.loop import Trainer


@pytest.fixture(scope="module")
def dataset_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("shapes")
    generate_synthetic_dataset(
        root, splits={"train": 10, "val": 2}, image_size=64, seed=1, max_object_size=40
    )
    return root


def take(sampler: GroupedBatchSampler, count: int) -> list[list[tuple[int, int]]]:
    return list(itertools.islice(iter(sampler), count))


def test_sampler_resumes_at_any_batch_and_shards_disjointly() -> None:
    ratios = [1.5, 0.7] * 10
    full = take(GroupedBatchSampler(ratios, 2, seed=5), 12)
    assert take(GroupedBatchSampler(ratios, 2, seed=5, start_batch=7), 5) == full[7:]
    for batch in full:  # one orientation per batch
        assert len({ratios[i] >= 1 for i, _ in batch}) == 1
    ranks = [take(GroupedBatchSampler(ratios, 2, seed=5, rank=r, world_size=2), 4) for r in (0, 1)]
    first_epoch = [{i for batch in shard for i, _ in batch} for shard in ranks]
    assert not first_epoch[0] & first_epoch[1]


def test_sampler_too_small_for_a_batch_names_the_fix() -> None:
    with pytest.raises(PipelineError, match=r"lower solver\.ims_per_gpu"):
        take(GroupedBatchSampler([1.0, 0.5], 4, seed=0), 1)


def test_gpu_decode_path_gives_the_same_batch_as_cpu_decoding(dataset_root: Path) -> None:
    flips = RandomFlips(horizontal=0.5, vertical=0.5)
    common = {
        "images": dataset_root / "train",
        "annotations": dataset_root / "annotations" / "train.json",
    }
    decoded = CocoInstances(**common, train=True, transform=flips)
    encoded = CocoInstances(**common, train=True, transform=flips, decode=False)
    keys = [(i, 1000 + i) for i in range(len(decoded))]
    trainer = Trainer(
        model=torch.nn.Identity(),
        optimizer=None,
        scheduler=None,
        batches=iter(()),  # type: ignore[arg-type]
        device=torch.device("cpu"),
        max_iter=0,
    )
    images_a, targets_a = trainer.to_device(collate([decoded[k] for k in keys]))
    images_b, targets_b = trainer.to_device(collate([encoded[k] for k in keys]))
    assert encoded[keys[0]][0].dim() == 1  # still JPEG bytes out of the dataset
    for a, b in zip(images_a, images_b, strict=True):
        assert torch.equal(a, b)
    for a, b in zip(targets_a, targets_b, strict=True):
        assert a.keys() == b.keys() and "flips" not in b
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_flips_move_boxes_with_the_masks(dataset_root: Path) -> None:
    dataset = CocoInstances(
        dataset_root / "train",
        dataset_root / "annotations" / "train.json",
        train=True,
        transform=RandomFlips(horizontal=1.0, vertical=1.0),
    )
    _, target = dataset[0, 7]
    for box, mask in zip(target["boxes"], target["masks"], strict=True):
        ys, xs = torch.nonzero(mask, as_tuple=True)
        expected = torch.tensor(
            [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32
        )
        assert torch.allclose(box, expected, atol=1.0)
