"""An exponential moving average of a model's trainable weights (``trainer.ema_decay``).

After every optimizer step each averaged tensor moves towards its parameter::

    average = decay_n * average + (1 - decay_n) * parameter,   decay_n = min(decay, (1 + n) / (10 + n))

where ``n`` numbers the update (1 for the first): the warm-up term keeps the first steps from being
dominated by the random initial weights (the same schedule as TensorFlow's
``ExponentialMovingAverage`` with ``num_updates``). It reaches ``decay`` after
``(10 decay - 1) / (1 - decay)`` steps (890 for 0.99, 4,490 for 0.998); a shorter run is
averaged by the warm-up term alone, so larger decays then give the same weights.
Validation, epoch selection and the final model use the averaged weights; training
continues on the raw ones. Buffers (running statistics, fixed graphs) are not averaged.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import torch


class WeightAverage:
    """Averaged copies of ``parameters``, updated by :meth:`update` after each optimizer step.

    Args:
        parameters: the trainable parameters to average (order fixes the state's layout).
        decay: the per-step decay in ``(0, 1)``; once the warm-up has reached it, the
            average spans about ``1 / (1 - decay)`` steps (0.99: the last ~100 steps).

    Example::

        average = WeightAverage(list(model.parameters()), decay=0.99)
        for batch in batches:
            ...; optimizer.step(); average.update()
        with average.applied():
            metrics = evaluate(model)      # the averaged weights
    """

    def __init__(self, parameters: list[torch.nn.Parameter], decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"the weight average's decay must be in (0, 1), got {decay}")
        self.parameters = list(parameters)
        self.decay = float(decay)
        #: optimizer steps averaged so far
        self.steps = 0
        self.averages = [p.detach().clone() for p in self.parameters]

    def rate(self) -> float:
        """The weight the next update gives the current parameters: ``1 - decay_n``, ``n = steps + 1``."""
        n = self.steps + 1
        return 1.0 - min(self.decay, (1.0 + n) / (10.0 + n))

    @torch.no_grad()
    def update(self) -> None:
        """Move every average towards its parameter (call after each optimizer step)."""
        rate = self.rate()
        self.steps += 1
        torch._foreach_lerp_(self.averages, [p.detach() for p in self.parameters], rate)

    @torch.no_grad()
    def _exchange(self) -> None:
        for parameter, average in zip(self.parameters, self.averages):
            held = parameter.detach().clone()
            parameter.copy_(average)
            average.copy_(held)

    @contextmanager
    def applied(self) -> Iterator[None]:
        """Inside the block the parameters hold the averages; the raw weights come back after."""
        self._exchange()
        try:
            yield
        finally:
            self._exchange()

    @torch.no_grad()
    def copy_to_parameters(self) -> None:
        """Overwrite the parameters with the averages (for good: training is over)."""
        for parameter, average in zip(self.parameters, self.averages):
            parameter.copy_(average)

    def state_dict(self) -> dict[str, Any]:
        """``{"decay", "steps", "averages": [tensor, ...]}`` (CPU copies), for checkpoints."""
        return {"decay": self.decay, "steps": self.steps, "averages": [a.detach().cpu().clone() for a in self.averages]}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output.

        Raises:
            ValueError: the state holds another number of tensors, other shapes or another decay.
        """
        averages = state["averages"]
        if float(state["decay"]) != self.decay:
            raise ValueError(f"the weight average was kept with decay {state['decay']}, this run uses {self.decay}")
        if len(averages) != len(self.averages):
            raise ValueError(f"expected {len(self.averages)} averaged tensors, found {len(averages)}")
        for index, (mine, saved) in enumerate(zip(self.averages, averages)):
            if not isinstance(saved, torch.Tensor) or saved.shape != mine.shape:
                shape = tuple(saved.shape) if isinstance(saved, torch.Tensor) else type(saved).__name__
                raise ValueError(f"averaged tensor {index} has shape {shape}, expected {tuple(mine.shape)}")
            mine.copy_(saved)
        self.steps = int(state["steps"])
