# Data sets are downloaded on the login node (compute nodes are often offline).
localrules:
    prepare_data,


rule prepare_data:
    output:
        result("data/{dataset}.ready"),
    log:
        "logs/prepare_data/{dataset}.log",
    benchmark:
        result("benchmarks/prepare_data/{dataset}.tsv")
    params:
        root=config["data_root"],
        # a declared set's `datasets` entry (null for a built-in set): only a change to it
        # prepares the set again
        declaration=lambda wildcards: workflow_config.declaration(config, wildcards.dataset),
    conda:
        "../envs/gcstudy.yaml"
    shell:
        "gcstudy prepare-data {wildcards.dataset} --root {params.root:q} "
        "--declaration {params.declaration:q} > {output:q} 2> {log:q}"
