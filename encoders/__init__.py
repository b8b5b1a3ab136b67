"""mtil.encoders: task encoders (language, demo video, goal image), vision backbones, FiLM."""
