"""The PipelineConfig of `edgekit export`'s options: one place for export and sweep."""

from __future__ import annotations

from typing import Any

from edgekit.cli.options import configs_from_options, mc_samples
from edgekit.core.config import (
    DEFAULT_MAX_ACCURACY_DROP,
    DEFAULT_PRECISIONS,
    ClusterConfig,
    ExportConfig,
    PipelineConfig,
    PruneConfig,
    QatConfig,
)


def pipeline_config_from_options(kw: dict[str, Any], model: str | None) -> PipelineConfig:
    """The PipelineConfig `edgekit export` builds from its options (--preset applied)."""
    data, train = configs_from_options(kw)
    do_prune = kw["prune"] if kw["prune"] is not None else model is None
    prune = (
        PruneConfig(
            target_sparsity=kw["sparsity"],
            epochs=kw["prune_epochs"],
            min_weights=kw["min_weights"],
            batch_size=kw["batch_size"],
            seed=kw["seed"],
        )
        if do_prune
        else None
    )
    budget = kw["max_accuracy_drop"]
    precisions = kw["precisions"]
    export = ExportConfig(
        precisions=tuple(p.strip() for p in precisions.split(",") if p.strip())
        if precisions is not None
        else DEFAULT_PRECISIONS,
        calibration_samples=kw["calibration_samples"],
        calibration_seed=kw["seed"],
        verify_samples=kw["verify_samples"],
        name=kw["name"],
        min_agreement=kw["min_agreement"],
        max_accuracy_drop=DEFAULT_MAX_ACCURACY_DROP if budget is None else budget,
        search=budget is not None,
        float_layers=kw["float_layers"],
        int4_layers=kw["int4_layers"],
        mc_samples=mc_samples(kw["mc_samples"]),
        mc_masks=kw["mc_masks"],
    )
    qat = QatConfig(epochs=kw["qat_epochs"], seed=kw["seed"]) if kw["qat"] else None
    cluster = (
        ClusterConfig(clusters=kw["clusters"], epochs=kw["cluster_epochs"], seed=kw["seed"])
        if kw["clusters"] is not None
        else None
    )
    return PipelineConfig(
        data=data,
        train=train,
        prune=prune,
        export=export,
        output_dir=kw["output"],
        qat=qat,
        cluster=cluster,
    )
