"""gradbook: the tested library behind *Gradients in Practice*.

One module per idea, with the chapter that teaches it in parentheses:

- :mod:`gradbook.device`      pick the device and seed every generator
- :mod:`gradbook.projection`  orthogonal components, sphere steps, PCGrad (chapter 1)
- :mod:`gradbook.vjp`         vector-Jacobian and Jacobian-vector products (chapter 2)
- :mod:`gradbook.moments`     differentiable moments of activation maps (chapter 2)
- :mod:`gradbook.jacobian`    full Jacobians: loop, reverse, forward (chapter 3)
- :mod:`gradbook.convinv`     pseudo-inverse of a convolution via the FFT (chapter 4)
- :mod:`gradbook.warp`        differentiable ``cv2.warpAffine`` (chapter 5)
- :mod:`gradbook.so3`         rotations: exp/log maps, Jacobians, fitting (chapter 6)
- :mod:`gradbook.blackbox`    gradients of black boxes (chapter 7)
- :mod:`gradbook.counting`    soft counts, expected counts, the count's distribution (appendix)
- :mod:`gradbook.safe_division` division with a fill value and a finite gradient at zero (appendix)
- :mod:`gradbook.named_gradients` gradients keyed by name, not by position (appendix)
- :mod:`gradbook.related`     the earlier home of the three above; re-exports their names
- :mod:`gradbook.lesson`      what the lessons share: sources, benchmark results, figure style
- :mod:`gradbook.exercises`   the checks students call from exercise notebooks
- :mod:`gradbook.assignments` student notebooks from solutions, in sync (the ``grading`` extra)
- :mod:`gradbook.grading`     nbgrader's autograder, kernels sandboxed (the ``grading`` extra)
"""

__version__ = "0.1.0"
