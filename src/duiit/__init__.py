"""duiit: cross-modal data augmentation of medical images.

Translates source-modality images (MRI, PET, ...) into the target modality (CT, ...) with an
unpaired CycleGAN-style translator trained jointly with the downstream predictor, so the
translation is steered by the prediction task (discriminative unpaired image-to-image
translation, DUIIT).
"""

__version__ = "0.1.0"
