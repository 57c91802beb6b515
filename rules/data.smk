# Data: each dataset's source rule puts its splits under data/<dataset>/ (generated, linked from
# an existing folder, or fetched and unpacked); prepare writes the copy of each split's
# annotations that every later stage reads (data/<dataset>/annotations/<split>.json, the
# user's file untouched); validate checks them and writes data/<dataset>/validation.json,
# which exists only for a dataset without errors; its readers take the categories from
# data/<dataset>/dataset.json (record_dataset).
# Pretrained weights are fetched to data/weights/ so that training never needs the network.


include: "helpers/data.smk"


rule generate_synthetic_dataset:
    input:
        unpack(image_inputs),
        code=code("generate_synthetic"),
    output:
        train_images=directory("data/{dataset}/train"),
        val_images=directory("data/{dataset}/val"),
        train_annotations="data/{dataset}/annotations/source/train.json",
        val_annotations="data/{dataset}/annotations/source/val.json",
    log:
        "results/logs/generate_synthetic_dataset/{dataset}.log",
    benchmark:
        "results/benchmarks/generate_synthetic_dataset/{dataset}.tsv"
    wildcard_constraints:
        dataset=datasets_of("synthetic"),
    conda:
        ENV
    container:
        CONTAINER
    params:
        args=synthetic_args,
    shell:
        "python scripts/generate_synthetic.py --out data/{wildcards.dataset}"
        " --annotations-dir annotations/source {params.args}"
        " > {log} 2>&1"


# An existing folder (e.g. COCO on shared storage): checked and linked, never copied.
rule link:
    input:
        code=code("link_dataset"),
    output:
        images=directory("data/{dataset}/{split}"),
        annotations="data/{dataset}/annotations/source/{split}.json",
    log:
        "results/logs/link/{dataset}.{split}.log",
    benchmark:
        "results/benchmarks/link/{dataset}.{split}.tsv"
    wildcard_constraints:
        dataset=datasets_of("folder"),
        split=splits_of("folder"),
    conda:
        ENV
    params:
        images=link_target("images"),
        annotations=link_target("annotations"),
    shell:
        "python scripts/link_dataset.py --images {params.images:q}"
        " --annotations {params.annotations:q} --images-link {output.images:q}"
        " --annotations-link {output.annotations:q} > {log} 2>&1"


# One job per file. The file is identified by its checksum: editing the download code does
# not fetch 19 GB again (ancient), a new url, mirror or checksum does (params).
rule fetch:
    input:
        code=ancient(code("fetch")),
    output:
        "data/downloads/{file}",
    log:
        "results/logs/fetch/{file}.log",
    benchmark:
        "results/benchmarks/fetch/{file}.tsv"
    wildcard_constraints:
        file=one_of(download_files(config)),
    conda:
        ENV
    params:
        url=fetch_url(download_files(config)),
        checksums=checksum_flags(download_files(config)),
        options=download_options,
    shell:
        "python scripts/fetch.py --url {params.url:q} {params.checksums} --out {output:q}"
        " {params.options} --progress log > {log} 2>&1"


use rule fetch as fetch_weights with:
    output:
        "data/weights/{file}",
    log:
        "results/logs/fetch_weights/{file}.log",
    benchmark:
        "results/benchmarks/fetch_weights/{file}.tsv"
    wildcard_constraints:
        file=one_of(config["weights"]),
    params:
        url=fetch_url(config["weights"]),
        checksums=checksum_flags(config["weights"]),
        options=download_options,


# Unpacks again when the archive's checksum (its identity) or the unpack code changes, not
# when the same bytes were fetched again (ancient). The output is a manifest written last.
rule unpack:
    input:
        archive=ancient("data/downloads/{file}"),
        code=code("unpack"),
    output:
        "data/{dataset}/.unpacked/{file}.json",
    log:
        "results/logs/unpack/{dataset}.{file}.log",
    benchmark:
        "results/benchmarks/unpack/{dataset}.{file}.tsv"
    wildcard_constraints:
        dataset=datasets_of("download"),
        file=one_of(download_files(config)),
    conda:
        ENV
    params:
        dest=unpack_dest,
        archive_checksums=checksum_flags(download_files(config)),
    shell:
        "python scripts/unpack.py {input.archive:q} {params.dest:q} --manifest {output:q}"
        " > {log} 2>&1"


# The copy of a split's annotations that validate checks and every later stage reads: the
# dataset's fixes applied (crowd, box_only, placeholder_categories: its own keys, else its
# format's), every change counted in {split}.changes.json; the source's file stays as it is.
rule prepare:
    input:
        unpack(image_inputs),
        data=prepare_input,
        code=code("prepare_dataset"),
    output:
        annotations="data/{dataset}/annotations/{split}.json",
        changes="data/{dataset}/annotations/{split}.changes.json",
    log:
        "results/logs/prepare/{dataset}.{split}.log",
    benchmark:
        "results/benchmarks/prepare/{dataset}.{split}.tsv"
    wildcard_constraints:
        split=one_of(all_splits()),
    conda:
        ENV
    container:
        CONTAINER
    params:
        images=source_of("images"),
        annotations=source_of("annotations"),
        original=original_of("annotations"),
        fixes=prepare_flags,
    shell:
        "python scripts/prepare_dataset.py --images {params.images:q}"
        " --annotations {params.annotations:q} --original {params.original:q} {params.fixes}"
        " --out {output.annotations:q} --changes {output.changes:q} > {log} 2>&1"


rule validate:
    input:
        unpack(image_inputs),
        data=dataset_input,
        code=code("validate_dataset"),
    output:
        validation_report("{dataset}"),
    log:
        "results/logs/validate/{dataset}.log",
    benchmark:
        "results/benchmarks/validate/{dataset}.tsv"
    conda:
        ENV
    container:
        CONTAINER
    threads: 4
    params:
        splits=dataset_split_args,
        checks=validation_flags,
        originals=original_args,
    shell:
        "python scripts/validate_dataset.py --dataset {wildcards.dataset} {params.splits}"
        " {params.originals} {params.checks} --workers {threads} --out {output:q} > {log} 2>&1"


# What the rules after validation read (data/dataset_record.py): the categories and the
# annotations' checksums, from the data itself. It does not depend on validate, so a rerun
# of the checks alone reruns nothing after them; every reader also waits for the validation
# report (common.smk: dataset_inputs). New data rewrites the record and reruns its readers.
rule record_dataset:
    input:
        unpack(image_inputs),
        data=dataset_input,
        code=code("record_dataset"),
    output:
        dataset_record("{dataset}"),
    log:
        "results/logs/record_dataset/{dataset}.log",
    benchmark:
        "results/benchmarks/record_dataset/{dataset}.tsv"
    conda:
        ENV
    container:
        CONTAINER
    params:
        splits=dataset_split_args,
    shell:
        "python scripts/record_dataset.py --dataset {wildcards.dataset} {params.splits}"
        " --out {output:q} > {log} 2>&1"
