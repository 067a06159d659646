"""The config layer: the schema, where configs live, and their keys. Imports nothing of ours.

``fashion_lab.config`` is the face: schema (dataclasses, enums, ConfigError), loading (conf/,
sweeps/, the sweep-file guard, compose) and keys (unknown-key hints, flatten, config_hash).
Importing it stays cheap: no TensorFlow, no MLflow.
"""

from fashion_lab.config.keys import *  # noqa: F401,F403
from fashion_lab.config.loading import *  # noqa: F401,F403
from fashion_lab.config.schema import *  # noqa: F401,F403
from fashion_lab.config.schema import _check  # noqa: F401
