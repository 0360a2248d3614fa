"""Knowledge distillation: a linear student's temperature-softened softmax is matched to a teacher's
by ``scipy.special.kl_div``, with a confidence penalty (``scipy.stats.entropy`` along rows) and a
regression head fit with the robust ``pseudo_huber`` loss plus a ``huber`` term."""

import numpy as np
from scipy.special import huber, kl_div, pseudo_huber, softmax
from scipy.stats import entropy


def loss(W, w_head, features, teacher_logits, targets):
    temperature = 2.0
    student = softmax(features @ W / temperature, axis=1)
    teacher = softmax(teacher_logits / temperature, axis=1)
    distill = temperature**2 * np.sum(kl_div(teacher, student)) / len(features)
    confidence = -np.mean(entropy(student, axis=1))
    residual = features @ w_head - targets
    robust = np.mean(pseudo_huber(0.5, residual)) + 0.1 * np.mean(huber(1.0, residual))
    return distill + 0.1 * confidence + robust


def example_args():
    rng = np.random.default_rng(405)
    features = rng.standard_normal((12, 4))
    teacher_logits = features @ rng.standard_normal((4, 3)) + 0.3 * rng.standard_normal((12, 3))
    targets = features @ np.array([0.5, -1.0, 0.3, 0.8]) + 0.2 * rng.standard_t(3, 12)
    return 0.3 * rng.standard_normal((4, 3)), 0.3 * rng.standard_normal(4), features, teacher_logits, targets
