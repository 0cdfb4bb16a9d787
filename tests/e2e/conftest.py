"""pytest set-up shared by every end-to-end test: the tests import helpers from this folder,
and each test's outcome is recorded on its node so fixtures print process logs only for
failures."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
