"""The decision core: pure functions of the queue, the workflow and a clock passed in. No I/O."""
