"""The CLI's exit codes (DESIGN.md, Contracts): one definition for every command."""

OK = 0  # finished: model pushed, or nothing new to push
FAILED = 1  # anything else: a bug, a failing service, a step that crashed
INPUT = 2  # usage or input error; nothing was run or changed
ANOMALIES = 3  # data anomalies stopped the run before training
NOT_BLESSED = 4  # the model was not blessed, and not pushed
