"""Transfer learning (TL): pre-train the predictor on the source images and labels, then
fine-tune it on the target images."""

from __future__ import annotations

from pathlib import Path

from duiit.data.cohort import Cohort
from duiit.methods.base import FittedModel, LabelCodec, Method, register
from duiit.methods.predictor_task import modality_groups
from duiit.methods.target_only import fit_predictor


@register
class Transfer(Method):
    name = "transfer"
    uses_sources = True
    description = "pre-train on sources, fine-tune on target (TL)"

    def fit(
        self, target_train: Cohort, target_val: Cohort, sources: list[Cohort], run_dir: Path
    ) -> FittedModel:
        codec = LabelCodec.fit(target_train)
        pre = modality_groups(None, sources, codec, self.cfg, self.rt, label_reference=target_train)
        pretrained = fit_predictor(
            self, pre, target_val, codec, run_dir, "pretrain", max(len(c) for c in sources)
        )
        groups = modality_groups(target_train, [], codec, self.cfg, self.rt)
        return fit_predictor(
            self,
            groups,
            target_val,
            codec,
            run_dir,
            "finetune",
            len(target_train),
            predictor=pretrained.predictor,
        )
