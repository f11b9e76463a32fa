"""The VLA policy: encoders -> one conditioning token -> DiT diffusion action head."""

from vla_runtime.policy.config import PolicyConfig
from vla_runtime.policy.model import Context, VLAPolicy

__all__ = ["Context", "PolicyConfig", "VLAPolicy"]
