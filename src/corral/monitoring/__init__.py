"""Monitoring: is production data still like the data a model was trained on?

What lives here:

- ``distributions``: :class:`~corral.monitoring.distributions.Distribution`, one
  feature's values either as raw samples (offline) or as counts over the
  reference profile's bins or categories (streaming), so a stored reference
  profile and a production window compare the same way;
- ``detectors``: drift detectors (PSI, Kolmogorov–Smirnov, chi-square,
  Jensen–Shannon, Wasserstein, a domain classifier), their registry
  (``get_detector("psi")``) and ``compare_frames`` / ``compare_profiles``;
- ``windows``: one feature's production window (fixed-memory, mergeable counts
  laid out by the reference profile);
- ``aggregator``: a deployment version's windows (features and outputs) and the
  ``Aggregator`` that updates them from served batches and drains deltas.

Start with ``detectors.compare_frames`` (two data frames) or
``detectors.compare_profiles`` (a reference profile and a window's counts).
"""
