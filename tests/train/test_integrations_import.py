"""The plug-in modules import without their hosts (the ``lad[trl]`` extra, verl), and then say which
extra is missing when the host is needed."""

from __future__ import annotations

import subprocess
import sys


def test_integrations_import_without_trl_or_verl_and_name_the_extra():
    code = ("import sys\nsys.modules['trl'] = None\nsys.modules['verl'] = None\n"
            "import ladtrain.integrations.trl as t, ladtrain.integrations.verl as v\n"
            "assert callable(v.compute_policy_loss_lad)\n"
            "try:\n    t.LADGRPOTrainer\nexcept ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "ladtrain.integrations.trl needs TRL: pip install 'lad[trl]'"
