# Input, params and resource functions of rules/data.smk, and what they import
# (`snakemake --lint` wants functions apart from the rules that use them).


import posixpath
import shlex

from maskrcnn_pipeline.workflow.config import (
    checksum_options,
    dataset_dir,
    dataset_fixes,
    download_files,
    original_split_paths,
    prepare_changes,
    remote_url,
    source_files,
    source_split_paths,
    split_sources,
    validation_report,
)


def datasets_of(source):
    """A wildcard constraint: the datasets of ``source`` (synthetic, folder, download)."""
    return one_of(
        name for name, entry in config["datasets"].items() if entry["source"] == source
    )


def splits_of(source):
    """A wildcard constraint: the splits of the datasets of ``source``."""
    return one_of(
        split
        for name, entry in config["datasets"].items()
        if entry["source"] == source
        for split in dataset_splits(config, name)
    )


def download_options(wildcards, threads):
    """Params function: fetch.py's retries, timeout and size cap. They decide whether a
    download succeeds, never its bytes (the checksum does), so they are operational: taking
    ``threads`` makes the function derived for Snakemake, which never reruns a download (19
    GB for COCO) when one of them changes (common.smk: operational_of)."""
    settings = config["download"]
    return shlex.join(
        [
            "--retries",
            str(settings["retries"]),
            "--timeout",
            str(settings["timeout"]),
            "--max-unknown-size-gb",
            str(settings["max_unknown_size_gb"]),
        ]
    )


def fetch_url(entries):
    """Params function: where {file} of ``entries`` comes from (<mirror>/<file> when set)."""
    return lambda wildcards: remote_url(config, wildcards.file, entries[wildcards.file])


def checksum_flags(entries):
    """Params function: fetch.py's checksum options for {file} of ``entries`` (or the lock
    file of a file trusted on first use)."""
    return lambda wildcards: " ".join(
        f"--{key.replace('_', '-')} {shlex.quote(value)}"
        for key, value in checksum_options(config, entries[wildcards.file]).items()
    )


def unpack_dest(wildcards):
    """The folder an archive unpacks into: data/<dataset>/<its unpack setting>."""
    entry = download_files(config, wildcards.dataset)[wildcards.file]
    return posixpath.normpath(f"{dataset_dir(wildcards.dataset)}/{entry['unpack']}")


def link_target(key):
    """Params function: what a folder source's link for {split} points at (images or file)."""
    return lambda wildcards: split_sources(config, wildcards.dataset, wildcards.split)[
        key
    ]


def all_splits():
    """Every split name of every dataset (the prepare rule's wildcard constraint)."""
    return [
        split for name in config["datasets"] for split in dataset_splits(config, name)
    ]


def prepare_input(wildcards):
    """What prepare reads: the split's files as the source leaves them (a download dataset:
    its unpack manifests, which stand for the unpacked files)."""
    if config["datasets"][wildcards.dataset]["source"] == "download":
        return source_files(config, wildcards.dataset)
    return list(source_split_paths(config, wildcards.dataset, wildcards.split).values())


def source_of(key):
    """Params function: the split's images folder or annotation file as the source leaves it."""
    return lambda wildcards: source_split_paths(
        config, wildcards.dataset, wildcards.split
    )[key]


def original_of(key):
    """Params function: the split's images folder or annotation file as the user knows it."""
    return lambda wildcards: original_split_paths(
        config, wildcards.dataset, wildcards.split
    )[key]


def prepare_flags(wildcards):
    """prepare_dataset.py's fixes: the dataset's own keys, else its format's (data/formats.py);
    as params, a changed fix prepares the split again (and reruns what reads it)."""
    fixes = dataset_fixes(config["datasets"][wildcards.dataset])
    return shlex.join(
        arg
        for key, value in sorted(fixes.items())
        for arg in (f"--{key.replace('_', '-')}", value)
    )


def dataset_input(wildcards):
    """What validate checks and record_dataset reads: the source's files, the prepared
    annotations and the prepare step's changes."""
    return dataset_files(config, wildcards.dataset)


def original_args(wildcards):
    """validate_dataset.py's --original (the user's paths, for its messages), --changes (the
    prepare step's) and --train-split (the splits a run trains on) of {dataset}."""
    dataset = wildcards.dataset
    args = []
    for split in dataset_splits(config, dataset):
        paths = original_split_paths(config, dataset, split)
        args += ["--original", split, paths["images"], paths["annotations"]]
        args += ["--changes", split, prepare_changes(dataset, split)]
    trained = {
        run["train_split"]
        for run in config["runs"].values()
        if run["dataset"] == dataset
    }
    for split in sorted(trained):
        args += ["--train-split", split]
    return shlex.join(args)


def dataset_split_args(wildcards):
    """The splits of {dataset} for validate_dataset.py and record_dataset.py."""
    return split_args(wildcards.dataset)


def validation_flags(wildcards):
    """validate_dataset.py's checks: the dataset's validation settings."""
    settings = config["datasets"][wildcards.dataset]["validation"]
    flags = f"--bbox-tolerance {settings['bbox_tolerance']}"
    return flags + (" --decode-images" if settings["decode_images"] else "")


def synthetic_args(wildcards):
    """The generator's options as CLI flags; as params, a changed option regenerates the data."""
    settings = config["datasets"][wildcards.dataset]["synthetic"]
    return " ".join(
        f"--{key.replace('_', '-')} {value}" for key, value in sorted(settings.items())
    )
