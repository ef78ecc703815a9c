"""The study's vocabulary, declared once: what every stage imports.

The sweep factors and experiments, the data sets, the run spec, the config with its
defaults and checks, and the run folder. Nothing here imports a stage (training,
measurement, analysis, scheduling); every stage imports from here.
"""
