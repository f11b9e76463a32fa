"""The VLA policy: encoders -> one conditioning token -> DiT diffusion action head, behind the `Policy`
contract (`protocol.py`) that every backend implements."""
