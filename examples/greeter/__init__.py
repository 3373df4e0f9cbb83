"""Your own gRPC service over syncwire's transports: docs/your-own-service.md.

``protos/`` holds the service definition; ``generated/`` is what
``syncwire generate examples/greeter/protos examples/greeter/generated`` made of it (the
package ``helloworld.v1``). Importing this package puts ``generated/`` on ``sys.path``
(an application would rather install or vendor its generated package).
"""

from __future__ import annotations

import sys
from pathlib import Path

GENERATED = str(Path(__file__).resolve().parent / "generated")
if GENERATED not in sys.path:
    sys.path.append(GENERATED)
