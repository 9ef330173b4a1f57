"""Config for Tortoise's own CLI.

tortoise -c storage.tortoise_conf.TORTOISE_ORM makemigrations
"""

import os

from storage.db import tortoise_config

TORTOISE_ORM = tortoise_config(os.environ.get("ANSFLOW_DATABASE_URL", "sqlite://:memory:"))
