"""The robustness experiment of the paper (Table 1): standard vs cooperative training, three runs, every test set.

``scripts/run_robustness_experiment.py --budget {smoke,cpu,paper}`` drives :func:`~medseg.experiments.runner.
run_experiment`:

* :mod:`~medseg.experiments.budgets`: the budgets (``config/experiment/*.json``);
* :mod:`~medseg.experiments.data`: layout check, data fingerprint, resampled copy for coarser budgets;
* :mod:`~medseg.experiments.state`: identity, completion markers and the task log of an experiment folder;
* :mod:`~medseg.experiments.tasks`: one training (:func:`medseg.training.api.train`, the ``medseg-train`` options)
  and one test (``run_tests``);
* :mod:`~medseg.experiments.tables`, :mod:`~medseg.experiments.paired_test`, :mod:`~medseg.experiments.curves`:
  robustness and per-vendor tables, Wilcoxon tests over volumes, training curves;
* :mod:`~medseg.experiments.run_stats`, :mod:`~medseg.experiments.trend`: tests over runs (a run is a (cval, seed)
  pair), the training-length trend and its verdict;
* :mod:`~medseg.experiments.report`, :mod:`~medseg.experiments.outputs`: ``RESULTS.md`` and the files beside it;
  :mod:`~medseg.experiments.saved`: the saved results a report is rebuilt from (``--report_only --volumes``).
"""
