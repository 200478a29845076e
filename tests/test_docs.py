"""The Examples sections of the public docstrings run and give what they show."""

import doctest

import pytest

import dkmeans.changes
import dkmeans.cluster
import dkmeans.decomposition
import dkmeans.metrics
import dkmeans.minibatch
import dkmeans.model_selection
import dkmeans.preprocessing


@pytest.mark.parametrize(
    "module",
    [
        dkmeans.changes,
        dkmeans.cluster,
        dkmeans.decomposition,
        dkmeans.metrics,
        dkmeans.minibatch,
        dkmeans.model_selection,
        dkmeans.preprocessing,
    ],
)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0
