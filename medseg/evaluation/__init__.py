"""Testing trained checkpoints and segmenting new scans.

* :mod:`~medseg.evaluation.runs`: ``--methods NAME=DIR`` parsing, run discovery, report folders;
* :mod:`~medseg.evaluation.datasets`: the ACDC / ACDC-C / M&Ms test sets, patient-wise;
* :mod:`~medseg.evaluation.inference`: model loading and chunked prediction;
* :mod:`~medseg.evaluation.reports`: per-patient metrics and the per-method report files;
* :mod:`~medseg.evaluation.aggregate`: the robustness table (``summary.csv`` / ``summary.md``) and box plot;
* :mod:`~medseg.evaluation.runner`: everything together (the body of ``medseg-test``);
* :mod:`~medseg.evaluation.geometry`, :mod:`~medseg.evaluation.scan`: predictions in the input geometry
  (``--save_predictions`` and ``medseg-predict``).
"""
