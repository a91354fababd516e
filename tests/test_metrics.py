"""classification_metrics against values worked out by hand."""
import json

import numpy as np
import pytest
import torch

from fercore.metrics import classification_metrics, confusion_matrix, metrics_from_confusion


def test_hand_computed_three_classes():
    # confusion (rows true): [[2,1,0],[0,1,1],[0,0,1]]
    # recall a=2/3 b=1/2 c=1; precision a=1 b=1/2 c=1/2; F1 a=0.8 b=0.5 c=2/3
    m = classification_metrics([0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 2, 2], 3, ["a", "b", "c"])
    assert m["confusion"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert m["n"] == 6
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["per_class_recall"] == pytest.approx({"a": 2 / 3, "b": 0.5, "c": 1.0})
    assert m["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    json.dumps(m)  # plain Python values only


def test_inputs_as_tensor_array_or_scores_agree():
    t, p = [2, 1, 0, 1], [2, 0, 0, 1]
    scores = torch.nn.functional.one_hot(torch.tensor(p), 3).float() * 5
    a = classification_metrics(torch.tensor(t), torch.tensor(p), 3)
    b = classification_metrics(np.array(t), scores, 3)
    assert a == b
    assert list(a["per_class_recall"]) == ["0", "1", "2"]


def test_class_absent_from_truth_and_predictions_is_ignored_by_macro_f1():
    m = classification_metrics([0, 0, 1], [0, 1, 1], 4, ["a", "b", "c", "d"])
    # F1 a = 2*(1*0.5)/1.5 = 2/3, F1 b = 2*(0.5*1)/1.5 = 2/3; c and d absent from both
    assert m["macro_f1"] == pytest.approx(2 / 3)
    assert m["per_class_recall"]["c"] is None and m["per_class_recall"]["d"] is None


def test_class_only_predicted_counts_with_zero_f1():
    # sklearn f1_score([0, 0], [0, 1], average="macro", zero_division=0) == 1/3
    m = classification_metrics([0, 0], [0, 1], 3)
    assert m["macro_f1"] == pytest.approx(1 / 3)
    assert m["per_class_recall"] == {"0": 0.5, "1": None, "2": None}


def test_confusion_sums_like_separate_counts():
    # what the Trainer's distributed evaluation relies on: confusion of the union = sum of confusions
    rng = np.random.default_rng(0)
    t, p = rng.integers(0, 5, 100), rng.integers(0, 5, 100)
    whole = metrics_from_confusion(confusion_matrix(t[:37], p[:37], 5) + confusion_matrix(t[37:], p[37:], 5))
    assert whole == classification_metrics(t, p, 5)


@pytest.mark.parametrize("t, p, k, match", [
    ([0, 1], [0], 2, "2 labels but y_pred has 1"),
    ([0, 3], [0, 1], 3, r"y_true\[1\] = 3 is outside 0..2"),
    ([0, 1], [0, -1], 3, r"y_pred\[1\] = -1"),
    ([0.5, 1], [0, 1], 3, "non-integer"),
    ([], [], 3, "no samples"),
])
def test_bad_input_is_named(t, p, k, match):
    with pytest.raises(ValueError, match=match):
        classification_metrics(t, p, k)
