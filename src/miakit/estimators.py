"""The scikit-learn estimator classes a config may name (`model.estimator`), each with the exact
types of the fitted parts its skops file holds: the allowlist `miakit.models.sklearn_model`
checks a saved file against before anything in it is built. Torch-free, so that commands that
train nothing (`miakit models list`) can name them."""

from __future__ import annotations

_TREE = ("sklearn.tree._tree.Tree",)
_LOSSES = (
    "sklearn._loss._loss.CyHalfBinomialLoss",
    "sklearn._loss._loss.CyHalfMultinomialLoss",
    "sklearn._loss._loss.CyExponentialLoss",
    "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn._loss.loss.HalfMultinomialLoss",
    "sklearn._loss.loss.ExponentialLoss",
    "sklearn._loss.link.Interval",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss.link.HalfLogitLink",
    "sklearn._loss.link.MultinomialLogit",
)
#: The estimator classes `model.estimator` may name, each with the exact types of the fitted
#: parts its skops file holds (measured with skops.io.get_untrusted_types and the file's schema,
#: binary and multiclass; `tests/test_trust.py` fits each class and loads it back).
FITTED_PARTS: dict[str, tuple[str, ...]] = {
    "sklearn.ensemble.RandomForestClassifier": (
        "sklearn.ensemble._forest.RandomForestClassifier",
        "sklearn.tree._classes.DecisionTreeClassifier",
        *_TREE,
    ),
    "sklearn.ensemble.ExtraTreesClassifier": (
        "sklearn.ensemble._forest.ExtraTreesClassifier",
        "sklearn.tree._classes.ExtraTreeClassifier",
        *_TREE,
    ),
    "sklearn.ensemble.GradientBoostingClassifier": (
        "sklearn.ensemble._gb.GradientBoostingClassifier",
        "sklearn.tree._classes.DecisionTreeRegressor",
        "sklearn.dummy.DummyClassifier",
        "numpy.random.mtrand.RandomState",
        *_TREE,
        *_LOSSES,
    ),
    "sklearn.tree.DecisionTreeClassifier": (
        "sklearn.tree._classes.DecisionTreeClassifier",
        *_TREE,
    ),
    "sklearn.tree.ExtraTreeClassifier": ("sklearn.tree._classes.ExtraTreeClassifier", *_TREE),
    "sklearn.linear_model.LogisticRegression": (
        "sklearn.linear_model._logistic.LogisticRegression",
    ),
    "sklearn.svm.SVC": ("sklearn.svm._classes.SVC",),
    "sklearn.naive_bayes.GaussianNB": ("sklearn.naive_bayes.GaussianNB",),
    "sklearn.neural_network.MLPClassifier": (
        "sklearn.neural_network._multilayer_perceptron.MLPClassifier",
        "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
        "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
        "sklearn.preprocessing._label.LabelBinarizer",
        "numpy.random.mtrand.RandomState",
    ),
}
