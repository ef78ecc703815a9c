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
        # the config files: their `datasets` declare the user's own data sets
        configfiles=workflow.overwrite_configfiles or workflow.configfiles,
    conda:
        "../envs/gcstudy.yaml"
    shell:
        "gcstudy prepare-data {wildcards.dataset} --root {params.root:q} "
        "--configfile {params.configfiles:q} > {output:q} 2> {log:q}"
