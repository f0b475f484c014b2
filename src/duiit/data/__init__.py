"""Getting images and labels in: files or the phantom -> normalised in-memory cohorts."""

from duiit.data.cohort import Cohort
from duiit.data.sources import load_cohorts, load_manifest
from duiit.data.splits import Split, split_cohort

__all__ = ["Cohort", "Split", "load_cohorts", "load_manifest", "split_cohort"]
