"""The training loop: ``fit`` with mini-batches, validation, early stopping and a progress bar."""

from chainrule.train.fit import EarlyStopping, FitResult, fit

__all__ = ["EarlyStopping", "FitResult", "fit"]
