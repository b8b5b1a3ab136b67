"""mtil.encoders: task encoders (language, demo video, goal image), vision backbones, FiLM.

Import the pieces from their modules (nothing heavy is imported here):

- ``mtil.encoders.language``: ``LanguageEncoder`` (frozen Hugging Face encoder + on-disk embedding cache)
- ``mtil.encoders.video``: ``VideoEncoder``, ``cosine_alignment_loss``, ``sample_clip``, ``pick_other_demo``
- ``mtil.encoders.backbones``: ``SmallCNN``, ``ResNet18Backbone``, ``make_backbone``, ``random_shift``
- ``mtil.encoders.film``: ``FiLM``
- ``mtil.encoders.conditioning``: ``ConditioningConfig``, ``conditioning_kind``, ``make_conditioner``
- ``mtil.encoders.conditioners``: ``CONDITIONERS`` (one ``TaskConditioner`` class per conditioning kind)
"""
