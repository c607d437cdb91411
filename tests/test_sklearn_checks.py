"""scikit-learn's own estimator checks, every one of them, on chainrule's MLP estimators."""

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from chainrule.sklearn import MLPClassifier, MLPRegressor


# The checks fit with default max_iter on data that needs more; scikit-learn's MLPs warn alike.
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@parametrize_with_checks([MLPRegressor(), MLPClassifier()])
def test_passes_sklearn_estimator_check(estimator, check, monkeypatch):
    # scikit-learn runs its array-API check (NumPy inputs with dispatch on) only when SciPy's
    # array-API mode is declared; declare it so that check runs rather than skips.
    monkeypatch.setenv("SCIPY_ARRAY_API", "1")
    check(estimator)
