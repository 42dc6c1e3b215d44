"""Fabric tasks of Master Control (`fab --list`): thin; the logic is in mastercontrol/deploy/.

The project root is this file's directory, wherever `fab` is run from.
"""

from pathlib import Path

from mastercontrol.deploy.tasks import namespace

ns = namespace(Path(__file__).resolve().parent)
