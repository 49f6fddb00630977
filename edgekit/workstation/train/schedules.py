"""Learning-rate schedules and optimizers of training (tf_keras)."""

from __future__ import annotations

from typing import Any

from edgekit.core.config import LrSchedule, Optimizer
from edgekit.core.errors import EdgekitError
from edgekit.workstation._keras import keras, tf

# Cosine decay ends at this fraction of the starting rate (settles BN statistics and weights).
COSINE_FINAL_FRACTION = 0.02
MOMENTUM = 0.9


@keras.saving.register_keras_serializable(package="edgekit")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """1cycle (Smith 2018): linear from max_lr/div up to max_lr over the first `up_fraction` of
    the steps, then linear down to max_lr/div/final_div at `total_steps` (held after it).

    Args:
        max_lr: the peak rate.
        total_steps: optimizer steps of the whole training.
        up_fraction: fraction of the steps spent going up, in (0, 1).
        div: the starting rate is max_lr / div.
        final_div: the last rate is max_lr / div / final_div.

    Raises:
        EdgekitError: a non-positive rate, step count or divisor, or up_fraction not in (0, 1).
    """

    def __init__(
        self,
        max_lr: float,
        total_steps: int,
        up_fraction: float = 0.3,
        div: float = 25.0,
        final_div: float = 1e4,
        name: str | None = None,
    ) -> None:
        super().__init__()
        if not (max_lr > 0 and total_steps >= 1 and div >= 1 and final_div >= 1):
            raise EdgekitError(
                f"1cycle needs max_lr > 0, total_steps >= 1, div >= 1 and final_div >= 1, got "
                f"{max_lr}, {total_steps}, {div}, {final_div}: pass e.g. 1e-3 and the steps"
            )
        if not 0.0 < up_fraction < 1.0:
            raise EdgekitError(f"1cycle up_fraction must be in (0, 1), got {up_fraction}: e.g. 0.3")
        self.max_lr, self.total_steps = float(max_lr), int(total_steps)
        self.up_fraction, self.div, self.final_div = up_fraction, float(div), float(final_div)
        self.name = name

    def __call__(self, step: tf.Tensor) -> tf.Tensor:
        step = tf.cast(step, tf.float32)
        start = self.max_lr / self.div
        end = start / self.final_div
        up = max(1.0, self.total_steps * self.up_fraction)
        down = max(1.0, self.total_steps - up)
        rising = start + (self.max_lr - start) * step / up
        falling = end + (self.max_lr - end) * (1.0 - tf.minimum((step - up) / down, 1.0))
        return tf.where(step < up, rising, falling)

    def get_config(self) -> dict[str, Any]:
        return {
            "max_lr": self.max_lr,
            "total_steps": self.total_steps,
            "up_fraction": self.up_fraction,
            "div": self.div,
            "final_div": self.final_div,
            "name": self.name,
        }


def learning_rate(
    base: float, schedule: LrSchedule | str = LrSchedule.COSINE, total_steps: int | None = None
) -> Any:
    """The rate (or LearningRateSchedule) of `schedule` over `total_steps`; a constant `base`
    when there are no steps to schedule over."""
    schedule = LrSchedule(schedule)
    if not total_steps or schedule is LrSchedule.CONSTANT:
        return base
    if schedule is LrSchedule.ONE_CYCLE:
        return OneCycle(base, total_steps)
    return keras.optimizers.schedules.CosineDecay(base, total_steps, alpha=COSINE_FINAL_FRACTION)


def make_optimizer(name: Optimizer | str, rate: Any) -> keras.optimizers.Optimizer:
    """A tf_keras optimizer by name with `rate` (a float or a LearningRateSchedule)."""
    name = Optimizer(name)
    if name is Optimizer.NADAM:
        return keras.optimizers.Nadam(learning_rate=rate)
    if name is Optimizer.MOMENTUM:
        return keras.optimizers.SGD(learning_rate=rate, momentum=MOMENTUM, nesterov=True)
    if name is Optimizer.RMSPROP:
        return keras.optimizers.RMSprop(learning_rate=rate)
    return keras.optimizers.Adam(learning_rate=rate)
