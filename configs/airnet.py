"""AirNet under its family's name: the default (configs/default.py), 192,544 parameters.

Run:
  python main.py --config configs/airnet.py --config.data.dataset=folder:/path/to/cifar10

Expected result: configs/default.py's (docs/airnet.md).
"""
from configs import default

get_config = default.get_config
