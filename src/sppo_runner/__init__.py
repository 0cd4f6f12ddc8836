"""sppo-runner: one learner loop for SPPO, token-level PPO, GRPO, RLOO and ReMax."""

__version__ = "0.1.0"
