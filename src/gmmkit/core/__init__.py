"""Pure mathematics of Gaussian mixtures: parameters, covariance types, the chunk kernel,
sufficient statistics, the M-step, initialisation and information criteria."""
