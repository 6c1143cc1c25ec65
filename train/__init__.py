"""Training, evaluation and simulation for lensscore (needs the [train] extra: TensorFlow).

``python -m train --help`` lists the commands.
"""
