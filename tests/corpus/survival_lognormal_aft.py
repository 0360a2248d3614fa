"""Log-normal accelerated-failure-time survival model with right censoring: observed failures score
``lognorm.logpdf`` (traced shape and ``scale=exp(X beta)``), censored units the log survival
``norm.logsf`` of the log time, and the coefficients a Laplace (L1) prior, ``laplace.logpdf``."""

import numpy as np
from scipy import stats


def loss(beta, log_sigma, X, times, observed):
    sigma = np.exp(log_sigma)
    mu = X @ beta
    failure = stats.lognorm.logpdf(times, sigma, scale=np.exp(mu))
    survival = stats.norm.logsf(np.log(times), loc=mu, scale=sigma)
    loglik = np.sum(observed * failure + (1.0 - observed) * survival)
    prior = np.sum(stats.laplace.logpdf(beta[1:], scale=0.5))
    return -(loglik + prior) / len(times)


def example_args():
    rng = np.random.default_rng(407)
    X = np.column_stack([np.ones(30), rng.standard_normal((30, 2))])
    latent = np.exp(X @ np.array([1.0, 0.4, -0.6]) + 0.5 * rng.standard_normal(30))
    censor = rng.uniform(1.0, 6.0, 30)
    observed = (latent <= censor).astype(float)
    return np.array([0.8, 0.3, -0.4]), np.array(np.log(0.6)), X, np.minimum(latent, censor), observed
