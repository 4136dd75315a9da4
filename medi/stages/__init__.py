"""The per-source stages, in run order: sample (adapt, sample, normalize), clean (dedup, decontaminate,
filter), select, mine, then instruct; ``units`` holds the stage units (``Stage``, ``PIPELINE``, ``Runner``,
``run_source``), ``checkpoint`` their outputs on disk, ``splits`` one source read in parallel splits.
Nothing here imports the executors, the release writers or the authoring tools.
"""
