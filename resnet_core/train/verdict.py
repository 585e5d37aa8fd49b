"""What a run did, said after it: why it ended, and why its accuracy is at chance when it is. Sentences generated
from the run's own numbers, for the Training page and the CLI alike."""

from __future__ import annotations

from .trainer import Progress, TrainResult


def describe_end(p: Progress, *, max_seconds: float | None = None, by: str = "you") -> str:
    """Why and where a run ended, from its "done" report: "stopped at the 120 s limit at step 290 of 624
    (epoch 1 of 2)", "finished 2 epochs", "stopped by you at step 80 of 624 (epoch 1 of 2)" (`by`: who pressed
    Stop, as the reader knows them)."""
    where = f"at step {p.step:,} of {p.total_steps:,} (epoch {max(p.epoch, 1)} of {p.epochs})"
    if p.end == "finished" or p.end is None:
        return f"finished {p.epochs} epoch{'s' if p.epochs != 1 else ''} ({p.step:,} steps)"
    if p.end == "time":
        limit = f"the {max_seconds:g} s limit" if max_seconds is not None else "its time limit"
        return f"stopped at {limit} {where}"
    if p.end == "steps":
        return f"stopped at its step limit {where}"
    return f"stopped by {by} {where}"


def explain_accuracy(result: TrainResult, num_classes: int) -> str | None:
    """A sentence when the final test accuracy is at chance level (within 1.5x of 1/K), saying why as far as the
    run's own numbers tell; None when the model learned something."""
    chance = 1 / num_classes
    if result.test_accuracy > 1.5 * chance:
        return None
    last = result.last
    done = last.epochs_done
    reason: str
    if done < 0.5:
        reason = (f"it trained for {done:.2f} of an epoch ({last.step:,} steps): too few for this model, which spends "
                  "its first steps finding the signal. Give it more time, or pick a smaller model (ResNet-20 learns "
                  "the built-in shapes in about a minute on a CPU)")
    else:
        losses = [p.loss for p in result.history if p.kind == "step" and p.loss is not None]
        falling = len(losses) >= 4 and sum(losses[-2:]) < sum(losses[:2]) * 0.9
        if falling:
            reason = ("its training loss was still falling when the run ended: it had not yet got past the first "
                      "plateau; more epochs would help")
        else:
            reason = ("its training loss did not fall: the optimiser did not find a way down. A plain (no-shortcut) "
                      "deep net often stalls like this, the degradation problem that residual connections solve "
                      "(He et al. 2016, §4.1); a lower learning rate or the residual twin would learn")
    return (f"Test accuracy {result.test_accuracy:.1%} is chance level for {num_classes} classes "
            f"({chance:.1%}): {reason}.")
