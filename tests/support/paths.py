"""Where the tests find the repository and their own data, wherever a test file sits under tests/."""

from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent
