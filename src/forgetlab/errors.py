"""Errors a user can cause. The CLI prints them as one line and exits with code 2."""


class UserError(Exception):
    """A problem in the user's input: the message names the problem and the fix, on one line (a line break that
    comes with the user's input, e.g. in a mistyped key, is shown as \\n)."""

    def __init__(self, message: str):
        super().__init__(str(message).replace("\r", "\\r").replace("\n", "\\n"))


class Interrupted(Exception):
    """Ctrl-C during a run: finished stages are saved in `run_dir` and `forgetlab <command> --resume` carries on."""

    def __init__(self, run_dir, command: str = "sequential", resume_command: str | None = None):
        super().__init__(str(run_dir))
        self.run_dir = run_dir
        self.command = command
        self.resume_command = resume_command or f"forgetlab {command} --resume {run_dir}"


class BelowBar(Exception):
    """A run finished but its result misses the bar it was asked to meet (e.g. no unlearning checkpoint kept retain
    and general above their floors while forgetting): one line, exit code 3, everything it made is saved."""
