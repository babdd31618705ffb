"""``helpers.commands``' user commands under the name
``tests/test_own_data.py`` imports."""
from helpers.commands import finish, run, start  # noqa: F401
