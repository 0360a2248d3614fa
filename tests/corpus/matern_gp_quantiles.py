"""Gaussian-process regression with a Matérn-3/2 covariance written through the Bessel function
(``k(r) = σ² 2^(1-ν)/Γ(ν) (√(2ν) r/ℓ)^ν K_ν(√(2ν) r/ℓ)``, ν a constant), fit by the exact
negative log marginal likelihood, plus a penalty tying the posterior mean's quantile band
(``norm.ppf``) and a gamma-CDF prior on the lengthscale (``gammainc``) to targets."""

import numpy as np
import scipy.special
import scipy.stats

NU = 1.5


def matern(r, lengthscale, variance):
    s = np.sqrt(2.0 * NU) * r / lengthscale
    return variance * 2.0 ** (1.0 - NU) / scipy.special.gamma(NU) * s**NU * scipy.special.kv(NU, s)


def loss(log_lengthscale, log_variance, log_noise, x, y):
    lengthscale, variance, noise = np.exp(log_lengthscale[0]), np.exp(log_variance[0]), np.exp(log_noise[0])
    n = len(x)
    eye = np.eye(n)
    r = np.abs(x[:, None] - x[None, :]) + eye  # 1 on the diagonal: K_ν(0) is infinite, k(0) = σ²
    K = np.where(eye > 0, variance, matern(r, lengthscale, variance)) + noise * eye
    L = np.linalg.cholesky(K)
    alpha = np.linalg.solve(K, y)
    nll = 0.5 * y @ alpha + np.sum(np.log(np.diag(L)))
    band = scipy.stats.norm.ppf(0.9, loc=np.mean(y), scale=np.sqrt(variance)) - scipy.stats.norm.isf(0.9, 0.0, 1.0)
    prior = scipy.special.gammainc(2.0, lengthscale) + scipy.special.gammaln(lengthscale + 1.0)
    return nll + 0.1 * (band - 2.0) ** 2 + 0.5 * prior


def example_args():
    rng = np.random.default_rng(1539)
    x = np.sort(rng.uniform(0.0, 5.0, 12))
    y = np.sin(1.3 * x) + 0.1 * rng.normal(size=12)
    return np.log(np.array([0.8])), np.log(np.array([1.2])), np.log(np.array([0.05])), x, y
