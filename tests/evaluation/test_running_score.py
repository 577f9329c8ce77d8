import math

import numpy as np
import pytest

from medseg.evaluation.running_score import runningScore


def test_scores_of_known_confusion_matrix():
    score = runningScore(3)
    gt = np.array([[0, 0, 1, 1], [2, 2, 2, 0]])
    pred = np.array([[0, 1, 1, 1], [2, 2, 0, 0]])
    score.update(gt[:1], pred[:1])
    score.update(gt[1:], pred[1:])
    assert score.confusion_matrix.tolist() == [[2, 1, 0], [0, 2, 0], [1, 0, 2]]
    s = score.get_scores()
    assert s["Overall Acc"] == pytest.approx(6 / 8)
    assert s["Mean Acc"] == pytest.approx(np.mean([2 / 3, 1, 2 / 3]))
    ious = [2 / 4, 2 / 3, 2 / 3]
    assert [s["Class IoU"][i] for i in range(3)] == pytest.approx(ious)
    assert s["Mean IoU"] == pytest.approx(np.mean(ious))  # background included
    score.reset()
    assert score.confusion_matrix.sum() == 0


def test_absent_class_is_nan_and_ignored():
    score = runningScore(4)
    score.update(np.zeros((2, 2), int), np.zeros((2, 2), int))
    s = score.get_scores()
    assert s["Mean IoU"] == 1.0 and math.isnan(s["Class IoU"][3])


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        runningScore(2).update(np.zeros((2, 2)), np.zeros((2, 3)))
