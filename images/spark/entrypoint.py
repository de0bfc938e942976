"""Main file of every openEO stage SparkApplication (mainApplicationFile
local:///opt/openeo/entrypoint.py): hands over to the stage entrypoint of the installed package.

A fixed path outside the venv, so the manifests do not depend on the venv's Python minor version
(site-packages/...), and running it as a script puts only /opt/openeo on sys.path[0].
"""

import sys

from openeo_airflow.engine.entrypoint import main

if __name__ == "__main__":
    sys.exit(main())
