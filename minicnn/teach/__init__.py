"""The tools that open the engine up for learning, behind ``minicnn summary``, ``show`` and
``gradcheck``: ``trace`` records what a forward pass runs, ``summarize`` prints a model's
shapes with the output-size formula, ``show`` draws kernels and feature maps, ``gradcheck``
compares every backward pass with central differences."""
