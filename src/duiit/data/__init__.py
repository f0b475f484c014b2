"""Getting images and labels in: files or the phantom -> normalised in-memory cohorts.

readers (file -> stored pixels), intensity (stored values -> [-1, 1]), manifest (CSV ->
validated rows), load (rows -> Cohort), cohort (the Cohort itself), splits (train/val/test);
importers/ write manifests for the paper's public datasets."""

from duiit.data.cohort import Cohort
from duiit.data.load import load_cohorts, load_manifest
from duiit.data.splits import Split, split_cohort

__all__ = ["Cohort", "Split", "load_cohorts", "load_manifest", "split_cohort"]
