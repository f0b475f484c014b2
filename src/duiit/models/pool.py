"""CycleGAN's history of generated images, so discriminators see older fakes too."""

from __future__ import annotations

import torch


class ImagePool:
    """Holds up to `size` past fakes; each query returns, per image, either the new image or
    (with probability 1/2, once full) a stored one that the new image replaces.

    Decisions use a CPU generator of its own: no device sync, and exact resume from state.
    The stored images follow the images it is queried with onto their device, so a pool
    restored from a checkpoint (on the CPU) moves to the run's device on its first query.
    """

    def __init__(self, size: int = 50, seed: int = 0) -> None:
        self.size = size
        self.images: torch.Tensor | None = None
        self.count = 0
        self.gen = torch.Generator().manual_seed(seed)

    def query(self, images: torch.Tensor) -> torch.Tensor:
        images = images.detach()
        if self.size == 0:
            return images
        if self.images is None:
            self.images = images.new_zeros((self.size, *images.shape[1:]))
        else:
            self.images = self.images.to(images.device)
        out = []
        for img in images:
            if self.count < self.size:
                self.images[self.count] = img
                self.count += 1
                out.append(img)
            elif torch.rand((), generator=self.gen) < 0.5:
                k = int(torch.randint(self.size, (), generator=self.gen))
                out.append(self.images[k].clone())
                self.images[k] = img
            else:
                out.append(img)
        return torch.stack(out)

    def state_dict(self) -> dict[str, object]:
        return {"images": self.images, "count": self.count, "gen": self.gen.get_state()}

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.images = state["images"]  # type: ignore[assignment]
        self.count = int(state["count"])  # type: ignore[arg-type]
        self.gen.set_state(state["gen"])  # type: ignore[arg-type]
