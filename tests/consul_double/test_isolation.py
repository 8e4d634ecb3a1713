"""The double is test-only: nothing in the switchgear package may import it or call /_double/."""

from __future__ import annotations

from pathlib import Path

import switchgear


def test_switchgear_never_imports_the_double():
    root = Path(switchgear.__file__).parent
    offenders = [
        str(p.relative_to(root))
        for p in root.rglob("*.py")
        if any(
            s in p.read_text(encoding="utf-8")
            for s in ("consul_double", "/_double/", "from tests", "import tests")
        )
    ]
    assert offenders == []
