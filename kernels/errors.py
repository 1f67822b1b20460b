"""The kernels' one error: a kernel asked for something it cannot do (a shape, a dtype, a missing Triton),
with a message that says what to pass or install.  The engine turns it into its own error type; the
kernels import nothing from the engine."""


class KernelError(Exception):
    """A kernel call that cannot run as asked; the message names the fix."""
