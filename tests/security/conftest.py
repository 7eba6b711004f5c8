"""Keeps what every test of the session wrote to stderr (where the service logs), and moves
the tests marked `after_suite` to the very end, so they can scan the whole run for secrets.
"""

import pytest

PLUGIN = "nicepay-captured-stderr"
AFTER_SUITE = "after_suite"


class CapturedStderr:
    """Every "Captured stderr ..." section of every test report, whatever its outcome."""

    def __init__(self) -> None:
        self.sections: list[tuple[str, str]] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        for title, content in report.sections:
            if title.startswith("Captured stderr"):
                self.sections.append((f"{report.nodeid} ({title})", content))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{AFTER_SUITE}: runs after every other test of the session")
    # A plugin, not this conftest: conftest hooks only see the reports of tests below it.
    if not config.pluginmanager.has_plugin(PLUGIN):
        config.pluginmanager.register(CapturedStderr(), PLUGIN)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    last = [item for item in items if item.get_closest_marker(AFTER_SUITE)]
    items[:] = [item for item in items if not item.get_closest_marker(AFTER_SUITE)] + last
